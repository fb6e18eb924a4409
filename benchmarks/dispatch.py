"""Dispatch overhead: the same short training runs through this machine's process pool and through a Dask scheduler.

    .venv/bin/python benchmarks/dispatch.py [--runs 20] [--epochs 40] [--repeats 3]

Starts a Dask scheduler and two one-thread workers on loopback (as ``MLIB_SCHEDULER`` users would), then trains
``runs`` small CGCNN runs (24 NaCl cells) with two workers each way, alternating the two paths ``repeats`` times,
each batch into a fresh run store (Dask's workers start once, before the timing, as a cluster's are; the pool starts
its workers in every batch, as the notebooks' batches do). Prints the wall seconds of each path (median over repeats) and the overhead of
Dask's (goal: under 5 %), and the `paper` profile's projected wall time on N one-thread workers (its projected
core-hours / N, a lower bound: no run is split). Writes results/benchmarks/dispatch.csv and paper_workers.csv
(and .md for the README).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pymatgen.core import Lattice, Structure

from mlib import parallel
from mlib.graphs.featurize import GraphSet, to_graph
from mlib.graphs.neighbors import GraphSpec, structure_arrays
from mlib.outputs import write_table
from mlib.params import TrainConfig
from mlib.paths import REPO_ROOT, RESULTS_DIR
from mlib.training import FitJob, fit_jobs

sys.path.insert(0, str(Path(__file__).parent))
from profile_cost import projection  # noqa: E402


def toy_set(n: int = 24) -> GraphSet:
    """``n`` NaCl cells of growing lattice constant; the target is the lattice constant."""
    cells = [Structure(Lattice.cubic(3.0 + 0.05 * k), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]) for k in range(n)]
    graphs = [to_graph(structure_arrays(s, GraphSpec())) for s in cells]
    table = pd.DataFrame({"id": [f"c{k}" for k in range(n)], "y": [3.0 + 0.05 * k for k in range(n)]})
    return GraphSet("toy", graphs, table.assign(reduced_formula="NaCl"), GraphSpec(), source_digest="toy")


def batch(data: GraphSet, runs: int, epochs: int, root: Path) -> float:
    """Wall seconds of ``runs`` runs on two workers, into the run store ``root``."""
    jobs = [
        FitJob("cgcnn", {"hidden": 8, "n_conv": 2}, TrainConfig(epochs=epochs, batch_size=4, seed=k), root / f"run{k}")
        for k in range(runs)
    ]
    start = time.perf_counter()
    fit_jobs(data, "y", jobs, workers=2, desc="dispatch")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = toy_set()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    dask = Path(sys.executable).parent / "dask"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    processes = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port)], **quiet)]
    processes += [
        subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-nanny", "--name", f"w{k}"], **quiet)
        for k in range(2)
    ]
    seconds: dict[str, list[float]] = {"process pool (today)": [], "Dask scheduler, 2 workers": []}
    try:
        from distributed import Client

        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        with tempfile.TemporaryDirectory() as tmp:
            for repeat in range(args.repeats):
                os.environ.pop(parallel.SCHEDULER_ENV, None)
                seconds["process pool (today)"].append(batch(data, args.runs, args.epochs, Path(tmp, f"pool{repeat}")))
                os.environ[parallel.SCHEDULER_ENV] = address
                seconds["Dask scheduler, 2 workers"].append(
                    batch(data, args.runs, args.epochs, Path(tmp, f"dask{repeat}"))
                )
                os.environ.pop(parallel.SCHEDULER_ENV)
    finally:
        for process in processes:
            process.kill()
            process.wait()
    pool, dask_s = (float(np.median(v)) for v in seconds.values())
    rows = [
        {"path": name, "runs": args.runs, "epochs": args.epochs, "wall seconds (median)": float(np.median(v)),
         "all repeats": ", ".join(f"{x:.1f}" for x in v)}
        for name, v in seconds.items()
    ]  # fmt: skip
    table = pd.DataFrame(rows)
    table["overhead vs pool"] = [0.0, dask_s / pool - 1]
    core_hours = projection("paper")["core-hours (projected)"].sum()
    table_n = pd.DataFrame(
        [{"workers": n, "paper profile wall hours (core-hours / workers, lower bound)": core_hours / n}
         for n in (16, 64, 256)]
    )  # fmt: skip
    caption = (
        f"{args.runs} CGCNN runs ({args.epochs} epochs, 24 crystals) on two one-thread workers, process pool against a "
        f"Dask scheduler on loopback (its workers started once before the timing, as a cluster's are; the pool starts "
        f"its workers in every batch), median of {args.repeats} alternating repeats: Dask's overhead "
        f"{dask_s / pool - 1:+.1%} (goal: under 5 %)"
    )
    out = RESULTS_DIR / "benchmarks"
    write_table(out, "dispatch", table, caption, ".3g")
    write_table(
        out,
        "paper_workers",
        table_n,
        f"The paper profile's projected wall time on N one-thread workers ({core_hours:,.0f} projected core-hours / N: "
        "a lower bound, no run is split across workers)",
        ".3g",
    )
    print(caption)
    print(table.to_string(index=False))
    print(table_n.round(1).to_string(index=False))


if __name__ == "__main__":
    main()
