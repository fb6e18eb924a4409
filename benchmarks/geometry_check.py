"""The geometry checks run before any neighbour list (issue 36): their cost on real crystals, and what they save
on an implausible one.

    MLIB_DATA_MIRROR=../shared/data .venv/bin/python benchmarks/geometry_check.py [--limit 2000]

Old: parse the CIF, build the neighbour arrays (8 A, 12 neighbours). New: the same with ``check_geometry`` in
between (as ``featurize_one`` runs it for training data, Flower sites and predictions). Then one 0.03 A NaCl cell
in a fresh process under a 3 GiB address-space limit, old path and new: seconds, peak memory, outcome.
Writes results/benchmarks/geometry_check.csv (and .md).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings

import pandas as pd

from mlib.outputs import write_table
from mlib.paths import REPO_ROOT, RESULTS_DIR

TINY = """
import resource, sys, time, warnings
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
warnings.simplefilter("ignore")
from pymatgen.core import Lattice, Structure
from mlib.graphs.neighbors import GraphSpec, check_geometry, structure_arrays
cell = Structure(Lattice.cubic(0.03), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
start = time.perf_counter()
try:
    if sys.argv[1] == "new":
        check_geometry(cell, 8.0)
    structure_arrays(cell, GraphSpec())
    outcome = "graph built"
except MemoryError:
    outcome = "MemoryError at the 3 GiB limit"
except Exception as exc:
    outcome = f"refused: {exc}"
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{time.perf_counter() - start:.2f}|{peak:.0f}|{outcome}")
"""


def real_crystals(limit: int) -> list[dict]:
    from mlib.data.mp import load_mp_cgcnn
    from mlib.graphs.neighbors import GraphSpec, check_geometry, structure_arrays, to_structure

    cifs = load_mp_cgcnn(limit=limit)["cif"].tolist()
    spec, rows = GraphSpec(), []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in ("old", "new"):
            start = time.perf_counter()
            for cif in cifs:
                structure = to_structure(cif)
                if path == "new":
                    check_geometry(structure, spec.radius)
                structure_arrays(structure, spec)
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "input": f"{len(cifs):,} mp-cgcnn crystals",
                    "path": path,
                    "seconds": seconds,
                    "ms per crystal": 1000 * seconds / len(cifs),
                    "peak MB": None,
                    "outcome": "graphs built",
                }
            )
    return rows


def tiny_cell() -> list[dict]:
    rows = []
    for path in ("old", "new"):
        done = subprocess.run([sys.executable, "-c", TINY, path], cwd=REPO_ROOT, capture_output=True, text=True)
        seconds, peak, outcome = done.stdout.strip().split("|", 2)
        rows.append(
            {
                "input": "0.03 A NaCl cell",
                "path": path,
                "seconds": float(seconds),
                "ms per crystal": None,
                "peak MB": float(peak),
                "outcome": outcome,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=2000, help="mp-cgcnn crystals to time")
    args = parser.parse_args()
    table = pd.DataFrame(real_crystals(args.limit) + tiny_cell())
    print(table.to_string(index=False))
    write_table(
        RESULTS_DIR / "benchmarks",
        "geometry_check",
        table,
        "Geometry checks before the neighbour list: cost on real crystals (old: without), and a 0.03 A cell "
        "under a 3 GiB limit (one process, 2-core machine)",
    )


if __name__ == "__main__":
    main()
