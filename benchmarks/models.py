"""Speed and memory of the six models on the same MP crystals (CGCNN and the federated study's five).

    MLIB_DATA_MIRROR=../shared/data .venv/bin/python benchmarks/models.py [--crystals 512] [--batch 64]

For each of CGCNN, GCN, GraphSAGE, GINE, MEGNet and M3GNet (default hyperparameters of
mlib.models.registry), in a fresh process so that peak memory is its own, on one thread (as the study's
parallel runs, one per core): training crystals per
second (Adam steps over pre-built batches, after one warm-up pass), inference crystals per second,
and peak resident memory. Also the time matgl takes to build M3GNet's three-body line graphs for
the same crystals. Writes results/benchmarks/models.csv (and .md for the README).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import torch

MODELS = ("cgcnn", "gcn", "sage", "gine", "megnet", "m3gnet")


def load(crystals: int):
    from mlib import datasets
    from mlib.models.registry import graph_spec
    from mlib.study.nb04b_models import common_crystals

    sets = {
        kind: datasets.load_mp("mp-cgcnn", limit=crystals, spec=graph_spec(model), workers=os.cpu_count())
        for kind, model in (("cgcnn", "gcn"), ("matgl", "m3gnet"))
    }
    return common_crystals(sets)


def measure(model_name: str, crystals: int, batch: int, passes: int) -> dict:
    """Timings of one model in this process."""
    from mlib.models.registry import MODELS as REGISTRY
    from mlib.models.registry import build_model
    from mlib.training import make_batches, seed_everything

    graph_set = load(crystals)[REGISTRY[model_name].graph_kind]
    y = graph_set.target("formation_energy_per_atom")
    rows = np.arange(len(graph_set))
    batches = make_batches(graph_set.graphs, y, rows, batch)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seed_everything(0)
    model = build_model(model_name)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def train_pass() -> None:
        model.train()
        for graph, target, _ in batches:
            loss = torch.nn.functional.mse_loss(model(graph), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    def infer_pass() -> None:
        model.eval()
        with torch.no_grad():
            for graph, _, _ in batches:
                model(graph)

    train_pass()
    times = []
    for _ in range(passes):
        start = time.perf_counter()
        train_pass()
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    infer_pass()
    infer_s = time.perf_counter() - start
    result = {
        "model": model_name,
        "crystals": len(graph_set),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train crystals/s": len(graph_set) / float(np.median(times)),
        "inference crystals/s": len(graph_set) / infer_s,
        "peak MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "data MiB": base,
    }
    if model_name == "m3gnet":
        from matgl.graph._compute import compute_pair_vector_and_distance, create_line_graph

        start, triples = time.perf_counter(), 0
        for graph, _, _ in batches:
            vec, dist = compute_pair_vector_and_distance(graph.pos, graph.edge_index, graph.pbc_offshift)
            cutoff = model.hyper["threebody_cutoff"]
            lg = create_line_graph(graph.edge_index, dist, vec, graph.pbc_offshift, graph.num_nodes, cutoff)
            triples += lg["line_edge_index"].shape[1]
        seconds = time.perf_counter() - start
        result["three-body graphs crystals/s"] = len(graph_set) / seconds
        result["triples per crystal"] = triples / len(graph_set)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crystals", type=int, default=512, help="the first N mp-cgcnn crystals")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--passes", type=int, default=2, help="timed training passes (median)")
    parser.add_argument("--one", choices=MODELS, help=argparse.SUPPRESS)  # internal: measure one model, print JSON
    args = parser.parse_args()
    if args.one:
        from dgl import utils as dgl_utils

        torch.set_num_threads(1)  # as the study's parallel runs: one thread each, one run per core
        dgl_utils.set_num_threads(1)
        print(json.dumps(measure(args.one, args.crystals, args.batch, args.passes)))
        return
    load(args.crystals)  # build and cache the graphs once, outside the timed processes
    rows = []
    for name in MODELS:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                name,
                "--crystals",
                str(args.crystals),
                "--batch",
                str(args.batch),
                "--passes",
                str(args.passes),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows).assign(batch=args.batch, threads=1, cores=os.cpu_count())
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.1f}"))
    from mlib.outputs import write_table
    from mlib.paths import RESULTS_DIR

    caption = (
        f"Six models on the same {table['crystals'].iloc[0]:,} mp-cgcnn crystals (first {args.crystals:,}), "
        f"batch {args.batch}, {os.cpu_count()} cores: speed, peak memory, M3GNet three-body graphs"
    )
    write_table(RESULTS_DIR / "benchmarks", "models", table, caption, ".1f")


if __name__ == "__main__":
    main()
