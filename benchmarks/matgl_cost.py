"""Where MEGNet's and M3GNet's CPU training time goes, and what caching M3GNet's three-body graphs saves.

    MLIB_DATA_MIRROR=../shared/data .venv/bin/python benchmarks/matgl_cost.py [--crystals 256] [--batch 64]

On the first N mp-cgcnn crystals (matgl's own graphs, as 04b_models trains them), one thread, after one
warm-up pass, per training pass:

* the phases: batching the crystal graphs, M3GNet's three-body line graph (pair vectors and
  ``create_line_graph``, which matgl redoes in every forward pass), the rest of the forward pass, and
  backward plus the Adam step;
* the five operators with the most CPU time (torch.profiler) and the edges and triples per crystal,
  the sizes the dense layers run over;
* M3GNet trained with its line graphs built once per crystal and batched beside the crystal graphs
  (``M3GNetRegressor.prepare``, as the study's trainer does), against building them in the forward pass:
  old and new training crystals/s in one run.

matgl 4 (PyG) as the study runs it.

Writes results/benchmarks/matgl_cost.csv, matgl_ops.csv (and .md for the README).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
import torch
from matgl.graph._compute import compute_pair_vector_and_distance, create_line_graph
from torch.profiler import ProfilerActivity, profile

from mlib.graphs.featurize import collate

MODELS = ("megnet", "m3gnet")


def load(crystals: int):
    from mlib import datasets
    from mlib.models.registry import graph_spec

    return datasets.load_mp("mp-cgcnn", limit=crystals, spec=graph_spec("m3gnet"), workers=os.cpu_count())


def line_graph(graph, cutoff: float) -> dict[str, torch.Tensor]:
    """M3GNet's three-body graph of one crystal (or batch) graph, as its forward pass builds it."""
    vec, dist = compute_pair_vector_and_distance(graph.pos, graph.edge_index, graph.pbc_offshift)
    return create_line_graph(graph.edge_index, dist, vec, graph.pbc_offshift, graph.num_nodes, cutoff)


def timed_pass(model, optimizer, batches, prepared: bool = False) -> dict[str, float]:
    """One training pass; seconds per phase (batching is timed by the caller). ``prepared``: the batches carry
    M3GNet's three-body graphs (the model reads them)."""
    seconds = {"three-body graph": 0.0, "forward": 0.0, "backward + step": 0.0}
    model.train()
    for graph, target in batches:
        start = time.perf_counter()
        if model.name == "m3gnet" and not prepared:
            l_g = line_graph(graph, model.hyper["threebody_cutoff"])
            mid = time.perf_counter()
            pred = model.net(graph, l_g=l_g).reshape(-1)
        else:
            mid = start
            pred = model(graph)
        loss = torch.nn.functional.mse_loss(pred, target)
        done = time.perf_counter()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seconds["three-body graph"] += mid - start
        seconds["forward"] += done - mid
        seconds["backward + step"] += time.perf_counter() - done
    return seconds


def measure(name: str, graph_set, batch: int) -> tuple[list[dict], pd.DataFrame]:
    from mlib.models.registry import build_model
    from mlib.training import seed_everything

    y = graph_set.target("formation_energy_per_atom")
    chunks = [np.arange(k, min(k + batch, len(graph_set))) for k in range(0, len(graph_set), batch)]
    start = time.perf_counter()
    batches = [(collate([graph_set.graphs[i] for i in c]), y[c]) for c in chunks]
    batching = time.perf_counter() - start
    seed_everything(0)
    model = build_model(name)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    timed_pass(model, optimizer, batches[:1])  # warm-up
    phases = timed_pass(model, optimizer, batches)
    edges = sum(g.edge_index.shape[1] for g, _ in batches) / len(graph_set)
    rows = [
        {
            "model": name,
            "variant": "three-body graph in forward" if name == "m3gnet" else "as trained",
            "crystals": len(graph_set),
            "batching s": batching,
            **{f"{k} s": v for k, v in phases.items()},
            "train crystals/s": len(graph_set) / (batching + sum(phases.values())),
            "edges per crystal": edges,
        }
    ]
    if name == "m3gnet":
        start = time.perf_counter()
        model.prepare(graph_set.graphs)  # once per crystal, as the study's trainer does
        build = time.perf_counter() - start
        start = time.perf_counter()
        cached = [(collate([graph_set.graphs[i] for i in c]), y[c]) for c in chunks]
        batching_prepared = time.perf_counter() - start
        rows[0]["triples per crystal"] = sum(g.line_edge_index.shape[1] for g in graph_set.graphs) / len(graph_set)
        timed_pass(model, optimizer, cached[:1], prepared=True)
        phases = timed_pass(model, optimizer, cached, prepared=True)
        rows.append(
            {
                **rows[0],
                "variant": "three-body graphs cached",
                "batching s": batching_prepared,
                **{f"{k} s": v for k, v in phases.items()},
                "train crystals/s": len(graph_set) / (batching_prepared + sum(phases.values())),
                "one-off line graphs s": build,
            }
        )
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        timed_pass(model, optimizer, batches[:2])
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops)
    top = pd.DataFrame(
        [{"model": name, "operator": e.key, "share of CPU time": e.self_cpu_time_total / total} for e in ops[:5]]
    )
    return rows, top


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crystals", type=int, default=256, help="the first N mp-cgcnn crystals")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    graph_set = load(args.crystals)
    torch.set_num_threads(1)
    rows, ops = [], []
    for name in MODELS:
        timing, top = measure(name, graph_set, args.batch)
        rows += timing
        ops.append(top)
    table = pd.DataFrame(rows)
    ops = pd.concat(ops, ignore_index=True)
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    print(ops.to_string(index=False, float_format=lambda v: f"{v:.1%}"))
    from mlib.outputs import write_table
    from mlib.paths import RESULTS_DIR

    out = RESULTS_DIR / "benchmarks"
    where = f"mp-cgcnn (first {args.crystals:,}), {len(graph_set):,} crystals, batch {args.batch}, 1 thread"
    speedup = table["train crystals/s"].iloc[-1] / table["train crystals/s"].iloc[-2]
    caption = f"MEGNet and M3GNet training pass by phase, {where}: cached three-body graphs {speedup:.2f}x"
    write_table(out, "matgl_cost", table, caption, ".2f")
    write_table(out, "matgl_ops", ops, f"The five operators with the most CPU time in a training pass, {where}", ".3f")


if __name__ == "__main__":
    main()
