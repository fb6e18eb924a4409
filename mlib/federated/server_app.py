"""The Flower ServerApp: waits for the sites, pools their target statistics, runs FedAvg/FedProx, saves the model.

Run by Flower's SuperLink when a run is submitted (``flwr run``; see :mod:`mlib.federated.flower`). The
run config (``--run-config``) sets the model, algorithm, rounds, local epochs, lr, mu, seed, the number
of sites to wait for, and ``out``: where the final global model is written in the study's model file
format, so 06_transfer and 04_embed read it like any trained model.
"""

from __future__ import annotations

import logging
import time

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from mlib import model_file
from mlib.federated import task
from mlib.federated.client import pooled_scaler
from mlib.federated.strategy import SiteStrategy
from mlib.scaling import Standardizer
from mlib.training import seed_everything

log = logging.getLogger(__name__)
app = ServerApp()


def wait_for_sites(grid: Grid, n_sites: int, timeout: float) -> list[int]:
    """The ids of ``n_sites`` connected sites, waiting up to ``timeout`` seconds for them."""
    deadline = time.monotonic() + timeout
    while len(nodes := list(grid.get_node_ids())) < n_sites:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(nodes)} of {n_sites} sites connected after {timeout:.0f} s")
        log.info("waiting for sites: %d of %d connected", len(nodes), n_sites)
        time.sleep(2)
    return nodes


def pooled_scaling(grid: Grid, nodes: list[int], timeout: float) -> Standardizer:
    """The target scaling of all sites' crystals, from each site's count, sum and sum of squares."""
    queries = [Message(content=RecordDict({}), dst_node_id=node, message_type=MessageType.QUERY) for node in nodes]
    replies = list(grid.send_and_receive(queries, timeout=timeout))
    failed = [reply.error.reason for reply in replies if reply.has_error()]
    if failed or len(replies) < len(nodes):
        raise RuntimeError(
            f"{len(failed)} site(s) could not report their data ({'; '.join(failed)}); "
            f"{len(replies)} of {len(nodes)} answered"
        )
    stats = [reply.content["stats"] for reply in replies]
    return pooled_scaler([(int(s["n"]), float(s["sum"]), float(s["sumsq"])) for s in stats])


@app.main()
def main(grid: Grid, context: Context) -> None:
    """The federation: initial model (seeded), pooled scaling, the strategy's rounds, the saved global model."""
    run = task.with_defaults(dict(context.run_config), task.RUN_CONFIG)
    config, choice, timeout = task.fed_config(run), task.ModelChoice.from_config(run), float(run["timeout"])
    seed_everything(config.seed)
    model = choice.build()
    nodes = wait_for_sites(grid, int(run["clients"]), timeout)
    scaler = pooled_scaling(grid, nodes, timeout)
    strategy = SiteStrategy(len(nodes), config.proximal_mu)
    train_config = ConfigRecord(
        {
            "target-mean": scaler.mean,
            "target-std": scaler.std,
            "lr": config.lr,
            "local-epochs": config.local_epochs,
            "seed": config.seed,
        }
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(model.state_dict()),
        num_rounds=config.rounds,
        timeout=timeout,
        train_config=train_config,
    )
    if result.arrays is None:
        raise RuntimeError("no round produced a global model (every site failed or was rejected)")
    model.load_state_dict(result.arrays.to_torch_state_dict())
    losses = {r: dict(m).get("loss") for r, m in result.train_metrics_clientapp.items()}
    model_file.save(
        run["out"],
        model,
        target=None,
        scaler=scaler,
        spec=choice.spec,
        dataset="Flower sites",
        data_digest=None,
        details={"config": config.as_dict(), "sites": len(nodes), "rejected": strategy.rejected, "train_loss": losses},
    )
    log.info("final global model written to %s", run["out"])
