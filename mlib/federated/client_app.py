"""The Flower ClientApp of a site: its crystals never leave it; it answers with statistics and weights.

``query``: the count, sum and sum of squares of the site's targets (all the server learns of its data,
pooled into the target scaling every site uses). ``train``: local epochs from the global weights with
the study's client update (:func:`mlib.federated.client.local_update`; FedProx's proximal term when the
server sends ``proximal-mu``), returning the weights and the number of crystals.

Run by Flower's SuperNode: ``flower-supernode --superlink HOST:PORT --node-config "data='site.csv' target='y'"``.
"""

from __future__ import annotations

import json
from functools import cache

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from mlib.federated import task
from mlib.federated.client import ClientData, local_update
from mlib.scaling import Standardizer

app = ClientApp()


@cache
def _site(node_json: str) -> tuple[task.ModelChoice, ClientData]:
    node = task.with_defaults(json.loads(node_json), task.NODE_CONFIG)
    return task.ModelChoice.from_config(node), task.site_data(node)


def site(context: Context) -> tuple[task.ModelChoice, ClientData]:
    """This site's model choice and data (built once per process)."""
    return _site(json.dumps(dict(context.node_config), sort_keys=True))


@app.query()
def statistics(msg: Message, context: Context) -> Message:
    """Sufficient statistics of the site's targets."""
    _, data = site(context)
    n, total, squares = data.stats()
    return Message(content=RecordDict({"stats": MetricRecord({"n": n, "sum": total, "sumsq": squares})}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Local epochs from the global weights; the weights and crystal count go back."""
    model_choice, data = site(context)
    model = model_choice.build()
    config = msg.content["config"]
    state = msg.content["arrays"].to_torch_state_dict()
    scaler = Standardizer(float(config["target-mean"]), float(config["target-std"]))
    update = local_update(
        model,
        state,
        data,
        scaler,
        int(config["local-epochs"]),
        float(config["lr"]),
        float(config.get("proximal-mu", 0.0)),
        int(config["seed"]),
        int(config["server-round"]),
    )
    metrics = MetricRecord({"num-examples": update.n, "loss": update.loss, "client": data.client})
    return Message(content=RecordDict({"arrays": ArrayRecord(update.state), "metrics": metrics}), reply_to=msg)
