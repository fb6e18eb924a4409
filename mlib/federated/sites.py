"""A Flower site's data and the federation's command line (server and site options).

A site brings either its own CSV (columns ``id``, ``cif`` and the target) or, to rehearse a
federation with the study's data, its shard of a data set's training split (``--client-id`` of
``--clients``, same partition and seed on every site). The server writes the final weights in the
study's model file format (:mod:`mlib.model_file`), so 06_transfer and 04_embed read them like any
trained model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from mlib import datasets
from mlib.catalogue import ALGORITHMS, MP_SPLIT
from mlib.federated.partition import anion_elements, partition
from mlib.graphs.featurize import GraphSet, featurize
from mlib.models.registry import graph_spec
from mlib.training import split_indices


def add_arguments(parser: argparse.ArgumentParser) -> None:
    roles = parser.add_subparsers(dest="role", required=True)
    server = roles.add_parser("server", help="aggregate the sites' updates")
    server.add_argument("--address", default="0.0.0.0:8080")
    server.add_argument("--clients", type=int, required=True, help="sites to wait for each round")
    server.add_argument("--algorithm", choices=list(ALGORITHMS), default="fedavg")
    server.add_argument("--mu", type=float, default=0.01, help="FedProx proximal weight")
    server.add_argument("--rounds", type=int, default=20)
    server.add_argument("--local-epochs", type=int, default=2)
    server.add_argument("--lr", type=float, default=1e-3)
    server.add_argument("--out", type=Path, default=Path("federated_model.pt"))
    client = roles.add_parser("client", help="join a federation with this site's crystals")
    client.add_argument("--server", required=True, help="HOST:PORT of the server")
    client.add_argument("--target", default="formation_energy_per_atom")
    client.add_argument("--data", type=Path, help="this site's CSV: id, cif and the target column")
    client.add_argument("--dataset", default="mp-cgcnn", help="or: rehearse with a shard of this data set")
    client.add_argument("--limit", type=int, default=None)
    client.add_argument("--partition", default="iid")
    client.add_argument("--client-id", type=int, default=0)
    client.add_argument("--clients", type=int, default=5)
    client.add_argument("--batch-size", type=int, default=64)
    for sub in (server, client):
        sub.add_argument("--model", default="gcn")
        sub.add_argument(
            "--hyper", type=json.loads, default={}, help="model hyperparameters as JSON, e.g. '{\"hidden\": 32}'"
        )
        sub.add_argument("--seed", type=int, default=0)


def spec(args: argparse.Namespace):
    """The graphs the federation's model reads."""
    return graph_spec(args.model, **args.hyper)


def site_graphs(args: argparse.Namespace) -> tuple[GraphSet, np.ndarray]:
    """This site's graphs and the rows it trains on: its own CSV, or its shard of a data set's training split."""
    if args.data is not None:
        frame = pd.read_csv(args.data).rename(columns={"cif": "source"})
        missing = {"id", "source", args.target} - set(frame.columns)
        if missing:
            raise SystemExit(f"{args.data}: missing column(s) {sorted(missing)} (need id, cif, {args.target})")
        graph_set = featurize(frame, args.data.stem, spec(args)).with_finite(args.target)
        return graph_set, np.arange(len(graph_set))
    graph_set = datasets.load_mp(args.dataset, limit=args.limit, spec=spec(args)).with_finite(args.target)
    y = graph_set.target(args.target).numpy()
    train = split_indices(len(graph_set), args.seed, MP_SPLIT)["train"]
    shards = partition(
        train, args.clients, args.partition, args.seed, chemistry=anion_elements(graph_set.table["formula"]), target=y
    )
    return graph_set, shards[args.client_id]
