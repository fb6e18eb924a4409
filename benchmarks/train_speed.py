"""CGCNN training speed at the paper's best setting (3 conv, hidden 64, batch 64): fast against literal convolution.

    MLIB_DATA_MIRROR=../shared/data .venv/bin/python benchmarks/train_speed.py [--dataset aflow] [--epochs 3]

Both rows train with new seeded batches every epoch (re-batching included in the time), on the same
crystals and split, in alternating epochs; they differ only in the convolution: the fast one computes the atom terms of
z W = v_i W_i + v_j W_j + u_ij W_u once per atom and sums them onto the edges with DGL's fused
``u_add_v``, the literal one multiplies the concatenated
z = v_i (+) v_j (+) u_ij of every edge, as the paper writes it. Prints crystals/s per training epoch,
the achieved GFLOP/s against a simple count of the epoch's multiply-adds (forward x 3 for forward and
backward), inference speed, peak memory and the projected 200 epochs; writes
results/benchmarks/train_speed.csv (and .md for the README). Goal (issue 16): 200 epochs on the full
thermal set in under 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from contextlib import contextmanager

import numpy as np
import pandas as pd
import torch

from mlib import catalogue, datasets
from mlib.catalogue import THERMAL_TARGET
from mlib.models.cgcnn import CGCNNConv
from mlib.models.registry import build_model
from mlib.outputs import write_table
from mlib.params import TrainConfig
from mlib.paths import RESULTS_DIR
from mlib.training import Trainer, make_batches, predict, seed_everything, split_indices


def epoch_flops(
    graphs: list, rows: np.ndarray, literal: bool, hidden: int = 64, head: int = 128, edge: int = 41
) -> float:
    """Multiply-adds x 2 of one forward pass over ``rows``: embedding, 3 convolutions, head."""
    atoms = sum(graphs[i].num_nodes() for i in rows)
    edges = sum(graphs[i].num_edges() for i in rows)
    conv = (
        edges * (2 * hidden + edge) * 2 * hidden if literal else atoms * hidden * 4 * hidden + edges * edge * 2 * hidden
    )
    macs = atoms * 92 * hidden + 3 * (conv + edges * 2 * hidden) + len(rows) * (hidden * head + head)
    return 2.0 * macs


@contextmanager
def convolution(literal: bool):
    """CGCNN's convolution as the paper writes it (``literal``) or the fast one, for the block's duration."""
    original = CGCNNConv.forward
    CGCNNConv.forward = CGCNNConv.forward_literal if literal else original
    try:
        yield
    finally:
        CGCNNConv.forward = original


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(graphs, y, split, epochs: int) -> list[dict]:
    """Median seconds of a training epoch, with re-batching, for each convolution.

    The two convolutions train in alternating epochs (after one warm-up each), so a slow spell of a shared
    machine falls on both rather than on one.
    """
    trainers = {}
    for literal in (True, False):
        seed_everything(0)
        trainers[literal] = Trainer(
            build_model("cgcnn"), graphs.graphs, y, split, TrainConfig(epochs=1 + epochs), "/tmp/mlib-bench"
        )
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(1 + epochs):
        for literal, trainer in trainers.items():
            with convolution(literal):
                times[literal].append(timed(lambda t=trainer: t.run_epoch(t.epoch_batches(), train=True)))
            trainer.epoch += 1
    rows = []
    for literal, trainer in trainers.items():
        with convolution(literal):
            batches = make_batches(graphs.graphs, y, np.arange(len(graphs)), 256)
            infer = timed(lambda t=trainer, b=batches: predict(t.model, b, t.scaler))
            val = timed(lambda t=trainer: t.run_epoch(t.val_batches, train=False))
        train = float(np.median(times[literal][1:]))
        flops = 3 * epoch_flops(graphs.graphs, split["train"], literal)
        rows.append(
            {
                "convolution": "literal (paper's equation)" if literal else "fast (atom terms per atom, fused u_add_v)",
                "train crystals/s": len(split["train"]) / train,
                "epoch s": train,
                "GFLOP/s": flops / train / 1e9,
                "inference crystals/s": len(graphs) / infer,
                "projected 200 epochs (min)": 200 * (train + val) / 60,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="aflow", choices=list(catalogue.THERMAL_DATASETS))
    parser.add_argument("--epochs", type=int, default=5, help="timed training epochs of each (after one warm-up)")
    args = parser.parse_args()
    graphs = datasets.load_thermal(args.dataset, workers=os.cpu_count()).graphs
    split = split_indices(len(graphs), 0)
    y = graphs.target(THERMAL_TARGET)
    rows = measure(graphs, y, split, args.epochs)
    table = pd.DataFrame(rows).assign(
        threads=torch.get_num_threads(),
        cores=os.cpu_count(),
        peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    speedup = rows[1]["train crystals/s"] / rows[0]["train crystals/s"]
    print(table.to_string(index=False))
    print(f"speed-up of the fast convolution: {speedup:.2f}x")
    caption = (
        f"CGCNN training speed at the paper's best setting, {graphs.label}, per-epoch batches, "
        f"{os.cpu_count()} cores: fast convolution {speedup:.2f}x the literal one"
    )
    write_table(RESULTS_DIR / "benchmarks", "train_speed", table, caption, ".2f")


if __name__ == "__main__":
    main()
