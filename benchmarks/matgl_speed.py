"""MEGNet and M3GNet per training epoch: matgl 1.0.0 (DGL, the study's earlier code) against matgl 4.1.2 (PyG), in one run.

    git worktree add ../mlib-matgl1 d99ee54     # the last commit on matgl 1.0.0
    python3 -m venv ../venv-matgl1 && ../venv-matgl1/bin/pip install -c ../mlib-matgl1/requirements.lock \\
        -e "../mlib-matgl1[test]"
    MLIB_DATA_MIRROR=../shared/data .venv/bin/python benchmarks/matgl_speed.py \\
        --old-python ../venv-matgl1/bin/python --old-tree ../mlib-matgl1 [--crystals 4000] [--threads 2]

On the first N mp-cgcnn crystals (matgl's own graphs of each version, as 04b_models trains them), batch 64, the
same threads for both: seconds of one training epoch (Adam steps over the epoch's batches, batching included),
after one warm-up batch, for MEGNet and M3GNet. The new code runs M3GNet twice: building its three-body graphs in
every forward pass (as matgl does by default) and with them built once per crystal (``prepare``, what the study's
trainer does; the one-off cost is printed apart). The old code runs in its own environment as a subprocess of this
script (``--old-python`` with ``--old-tree`` on its path); without them only the new rows are printed. Writes
results/benchmarks/matgl_speed.csv (and .md for the README).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

MODELS = ("megnet", "m3gnet")
TARGET = "formation_energy_per_atom"


def epoch_seconds(name: str, graph_set, batch: int, prepared: bool) -> dict[str, float]:
    """One training epoch of ``name`` on ``graph_set`` (seconds), with the same mlib calls in both versions."""
    from mlib import training
    from mlib.models.registry import build_model

    training.seed_everything(0)
    model = build_model(name)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    y = graph_set.target(TARGET)
    rows = np.arange(len(graph_set))
    start = time.perf_counter()
    if prepared:
        training.prepare_graphs(model, graph_set.graphs)
    one_off = time.perf_counter() - start

    def step(graph, target) -> None:
        loss = torch.nn.functional.mse_loss(model(graph), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    model.train()
    graph, target, _ = training.make_batches(graph_set.graphs, y, rows[:batch], batch)[0]
    step(graph, target)  # warm-up
    start = time.perf_counter()
    for graph, target, _ in training.make_batches(graph_set.graphs, y, rows, batch, np.random.default_rng(0)):
        step(graph, target)
    return {"epoch s": time.perf_counter() - start, "one-off s": one_off}


def measure(crystals: int, batch: int, threads: int, version: str) -> list[dict]:
    """Every model (and M3GNet's prepared variant where the code has it) of the installed matgl."""
    from importlib.metadata import version as installed

    from dgl import utils as dgl_utils

    from mlib import datasets, training
    from mlib.models.registry import graph_spec

    torch.set_num_threads(threads)
    dgl_utils.set_num_threads(threads)
    graph_set = datasets.load_mp("mp-cgcnn", limit=crystals, spec=graph_spec("m3gnet"), workers=os.cpu_count())
    variants = [("megnet", False), ("m3gnet", False)]
    if hasattr(training, "prepare_graphs"):
        variants.append(("m3gnet", True))
    rows = []
    for name, prepared in variants:
        timing = epoch_seconds(name, graph_set, batch, prepared)
        rows.append(
            {
                "code": version,
                "matgl": installed("matgl"),
                "model": name,
                "three-body graphs": ("built once per crystal" if prepared else "in every forward pass")
                if name == "m3gnet"
                else "",
                "crystals": len(graph_set),
                **timing,
                "crystals/s": len(graph_set) / timing["epoch s"],
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crystals", type=int, default=4000, help="the first N mp-cgcnn crystals")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--old-python", help="python of an environment with matgl 1.0.0")
    parser.add_argument("--old-tree", help="a checkout of the study's last commit on matgl 1.0.0")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: measure this code, print JSON
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.crystals, args.batch, args.threads, args.measure)))
        return
    import pandas as pd

    rows = []
    if args.old_python and args.old_tree:
        env = {**os.environ, "PYTHONPATH": os.path.abspath(args.old_tree)}
        command = [args.old_python, os.path.abspath(__file__), "--measure", "old (matgl 1.0.0, DGL)"]
        command += ["--crystals", str(args.crystals), "--batch", str(args.batch), "--threads", str(args.threads)]
        old = subprocess.run(command, env=env, cwd=args.old_tree, check=True, stdout=subprocess.PIPE, text=True)
        out = old.stdout
        rows += json.loads(out.strip().splitlines()[-1])
    rows += measure(args.crystals, args.batch, args.threads, "new (matgl 4.1.2, PyG)")
    table = pd.DataFrame(rows)
    old = table[table["code"].str.startswith("old")].set_index("model")["epoch s"]
    table["speed-up vs old"] = [old.get(m, np.nan) / s for m, s in zip(table["model"], table["epoch s"])]
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    from mlib.outputs import write_table
    from mlib.paths import RESULTS_DIR

    caption = (
        f"MEGNet and M3GNet, seconds per training epoch, matgl 1.0.0 (the study's earlier code) against matgl 4.1.2, "
        f"mp-cgcnn (first {args.crystals:,}), {int(table['crystals'].iloc[-1]):,} crystals, batch {args.batch}, "
        f"{args.threads} threads, one run"
    )
    write_table(RESULTS_DIR / "benchmarks", "matgl_speed", table, caption, ".2f")


if __name__ == "__main__":
    main()
