"""CGCNN training and inference speed at the paper's best setting (3 conv, hidden 64, batch 64).

    MLIB_DATA_MIRROR=../shared/data .venv/bin/python benchmarks/train_speed.py [--dataset aflow] [--epochs 3]

Prints crystals per second for a training epoch (graphs batched once, as the trainer does) and for
inference, the peak memory, and the projected time of a 200-epoch run; writes
results/benchmarks/train_speed.csv (and .md for the README). Goal (issue 3): 200 epochs on the
thermal-expansion set in under 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
import pandas as pd
import torch

from mlib import datasets
from mlib.catalogue import THERMAL_TARGET
from mlib.models.registry import build_model
from mlib.params import TrainConfig
from mlib.paths import RESULTS_DIR
from mlib.training import Trainer, make_batches, predict, seed_everything, split_indices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="aflow")
    parser.add_argument("--epochs", type=int, default=3, help="timed training epochs (after one warm-up)")
    args = parser.parse_args()
    graphs = datasets.load_thermal(args.dataset, workers=os.cpu_count()).graphs
    seed_everything(0)
    split = split_indices(len(graphs), 0)
    y = graphs.target(THERMAL_TARGET)
    start = time.perf_counter()
    trainer = Trainer(
        build_model("cgcnn"), graphs.graphs, y, split, TrainConfig(epochs=1 + args.epochs), "/tmp/mlib-bench"
    )
    batch_s = time.perf_counter() - start
    times = []
    for _ in range(1 + args.epochs):
        start = time.perf_counter()
        trainer.run_epoch(trainer.train_batches, train=True)
        times.append(time.perf_counter() - start)
    train_s = float(np.median(times[1:]))
    start = time.perf_counter()
    predict(trainer.model, make_batches(graphs.graphs, y, np.arange(len(graphs)), 256), trainer.scaler)
    infer_s = time.perf_counter() - start
    start = time.perf_counter()
    trainer.run_epoch(trainer.val_batches, train=False)
    val_s = time.perf_counter() - start
    n_train = len(split["train"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = pd.DataFrame(
        [
            {"measure": "batch graphs once (train + val)", "crystals": n_train + len(split["val"]), "seconds": batch_s},
            {"measure": "training epoch (median)", "crystals": n_train, "seconds": train_s},
            {"measure": "inference, all crystals", "crystals": len(graphs), "seconds": infer_s},
            {
                "measure": "projected 200 epochs (train + validation)",
                "crystals": n_train,
                "seconds": batch_s + 200 * (train_s + val_s),
            },
        ]
    )
    table["crystals/s"] = table["crystals"] / table["seconds"]
    table.loc[3, "crystals/s"] = float("nan")
    table = table.assign(peak_mib=round(peak), threads=torch.get_num_threads(), cores=os.cpu_count())
    print(f"CGCNN (3 conv, hidden 64, batch 64) on {graphs.name}: {len(graphs):,} crystals")
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    out = RESULTS_DIR / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "train_speed.csv", index=False)
    caption = (
        f"CGCNN speed at the paper's best setting, {graphs.name} ({len(graphs):,} crystals), {os.cpu_count()} cores"
    )
    (out / "train_speed.md").write_text(f"**{caption}**\n\n{table.to_markdown(index=False, floatfmt='.2f')}\n")


if __name__ == "__main__":
    main()
