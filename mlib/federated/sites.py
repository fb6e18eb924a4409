"""Command line of a Flower federation: the server, and a site that joins it with its own crystals.

A site brings either its own CSV (columns ``id``, ``cif`` and the target) or, to rehearse a
federation with the study's data, its shard of a data set's training split (``--client-id`` of
``--clients``, same partition and seed on every site). The server writes the final weights in the
format of :func:`mlib.training.fit_regressor`'s ``model.pt`` (model name, hyperparameters, target
scaling), so 06_transfer and :func:`mlib.embedding.load_model` read them like any trained model.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch

from mlib.federated.client import client_data
from mlib.federated.simulation import ALGORITHMS, FedConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    roles = parser.add_subparsers(dest="role", required=True)
    server = roles.add_parser("server", help="aggregate the sites' updates")
    server.add_argument("--address", default="0.0.0.0:8080")
    server.add_argument("--clients", type=int, required=True, help="sites to wait for each round")
    server.add_argument("--algorithm", choices=ALGORITHMS, default="fedavg")
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
        sub.add_argument("--hyper", type=json.loads, default={}, help='model hyperparameters as JSON, e.g. \'{"hidden": 32}\'')
        sub.add_argument("--seed", type=int, default=0)


def run_server(args: argparse.Namespace) -> None:
    from mlib.federated.flower import serve
    from mlib.models.registry import build_model
    from mlib.training import seed_everything

    config = FedConfig(args.algorithm, args.rounds, args.local_epochs, args.mu, args.lr, seed=args.seed)
    seed_everything(args.seed)
    model = build_model(args.model, **args.hyper)
    strategy = serve(args.address, config, model.state_dict(), args.clients)
    from mlib.federated.client import from_arrays

    model.load_state_dict(from_arrays(strategy.latest, model.state_dict()))
    torch.save({"name": args.model, "model": model.state_dict(), "hyper": model.hyper, "target": None,
                "scaler": asdict(strategy.scaler), "config": asdict(config), "rejected": strategy.rejected}, args.out)


def site_graphs(args: argparse.Namespace):
    """This site's graphs and targets: its own CSV, or its shard of a data set's training split."""
    from mlib import datasets
    from mlib.federated.partition import anion_elements, partition
    from mlib.graphs.featurize import featurize
    from mlib.model_study import SPLIT
    from mlib.models.registry import graph_spec
    from mlib.training import split_indices

    spec = graph_spec(args.model, **args.hyper)
    if args.data is not None:
        frame = pd.read_csv(args.data).rename(columns={"cif": "source"})
        missing = {"id", "source", args.target} - set(frame.columns)
        if missing:
            raise SystemExit(f"{args.data}: missing column(s) {sorted(missing)} (need id, cif, {args.target})")
        graph_set = featurize(frame, args.data.stem, spec).with_finite(args.target)
        return graph_set, [list(range(len(graph_set)))]
    graph_set = datasets.load_mp(args.dataset, limit=args.limit, spec=spec).with_finite(args.target)
    y = graph_set.target(args.target).numpy()
    train = split_indices(len(graph_set), args.seed, SPLIT)["train"]
    shards = partition(train, args.clients, args.partition, args.seed,
                       chemistry=anion_elements(graph_set.table["formula"]), target=y)
    return graph_set, [shards[args.client_id]]


def run_client(args: argparse.Namespace) -> None:
    from mlib.federated.flower import SiteClient, join
    from mlib.models.registry import build_model

    graph_set, (rows,) = site_graphs(args)
    data = client_data(graph_set.graphs, graph_set.target(args.target), [rows], args.batch_size, args.seed)[0]
    data.client = args.client_id
    join(args.server, SiteClient(build_model(args.model, **args.hyper), data))
