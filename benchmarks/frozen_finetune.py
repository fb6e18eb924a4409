"""Fine-tuning with a frozen encoder (06_transfer's ``frozen`` mode): the whole model per batch against the head alone.

    MLIB_DATA_MIRROR=../shared/data .venv/bin/python benchmarks/frozen_finetune.py [--model cgcnn] [--epochs 3]

A frozen encoder runs in eval mode, so each crystal's vector is the same in every epoch: the trainer
computes it once and trains the head on the stored vectors (``Trainer.head_only``). Both rows train a
fresh head on the thermal set's 6:2:2 training split (batch 64), with a frozen encoder of the same
model; the old row runs the whole model on every batch, as before. Prints seconds per epoch (training
and validation pass), the one-off cost of the crystal vectors, and the projected 200 epochs; writes
results/benchmarks/frozen_finetune.csv (and .md for the README).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from mlib import catalogue, datasets
from mlib.catalogue import THERMAL_TARGET
from mlib.models.registry import build_model
from mlib.outputs import write_table
from mlib.params import FineTune, TrainConfig
from mlib.paths import RESULTS_DIR
from mlib.training import Trainer, seed_everything, split_indices


def measure(model: str, graph_set, split: dict, epochs: int, head_only: bool) -> dict:
    """Median seconds of an epoch (training + validation pass) after a warm-up, and the one-off vector cost."""
    seed_everything(0)
    y = graph_set.target(THERMAL_TARGET)
    Trainer.store_vectors = head_only
    trainer = Trainer(
        build_model(model), graph_set.graphs, y, split, TrainConfig(epochs=1 + epochs), "/tmp/mlib-bench", FineTune()
    )
    assert trainer.head_only == head_only
    start = time.perf_counter()
    if trainer.head_only:
        trainer._crystal_vectors()
    once = time.perf_counter() - start
    times = []
    for _ in range(1 + epochs):
        start = time.perf_counter()
        trainer.run_epoch(trainer.epoch_batches(), train=True)
        trainer.run_epoch(trainer.val_batches, train=False)
        times.append(time.perf_counter() - start)
        trainer.epoch += 1
    epoch = float(np.median(times[1:]))
    return {
        "model": model,
        "frozen encoder": "head on stored crystal vectors" if head_only else "whole model every batch",
        "crystal vectors once (s)": once,
        "epoch s": epoch,
        "projected 200 epochs (min)": (once + 200 * epoch) / 60,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cgcnn", choices=["cgcnn", "gcn", "sage", "gine"])
    parser.add_argument("--dataset", default="aflow", choices=list(catalogue.THERMAL_DATASETS))
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (after one warm-up)")
    args = parser.parse_args()
    graph_set = datasets.load_thermal(args.dataset, workers=os.cpu_count()).graphs.with_finite(THERMAL_TARGET)
    split = split_indices(len(graph_set), 0)
    rows = [measure(args.model, graph_set, split, args.epochs, head_only) for head_only in (False, True)]
    table = pd.DataFrame(rows)
    speedup = rows[0]["epoch s"] / rows[1]["epoch s"]
    print(table.to_string(index=False))
    print(f"speed-up per epoch: {speedup:.0f}x")
    caption = (
        f"Frozen-encoder fine-tuning of {args.model} on {graph_set.label}, {len(split['train']):,} training crystals: "
        f"head on stored crystal vectors {speedup:.0f}x faster per epoch"
    )
    write_table(RESULTS_DIR / "benchmarks", "frozen_finetune", table, caption, ".3f")


if __name__ == "__main__":
    main()
