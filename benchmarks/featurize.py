"""Featurisation speed on the mp-cgcnn set: cold (parse + neighbours + graphs) and cached reload.

    MLIB_DATA_MIRROR=../shared/data .venv/bin/python benchmarks/featurize.py [--limit N] [--workers W]

Goal (issue 9): all 36,737 crystals in under 5 minutes on 2 cores; cached reload under 30 s.
Prints the figures and writes them to results/benchmarks/featurize.csv (and .md for the README).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

import pandas as pd

from mlib.outputs import write_table
from mlib.paths import RESULTS_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="first N crystals (default: all)")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["MLIB_CACHE"] = cache  # cold: an empty cache
        from mlib.data.mp import load_mp_cgcnn
        from mlib.graphs.featurize import featurize

        start = time.perf_counter()
        frame = load_mp_cgcnn(limit=args.limit).rename(columns={"material_id": "id", "cif": "source"})
        read_s = time.perf_counter() - start
        start = time.perf_counter()
        cold = featurize(frame, "mp-cgcnn", workers=args.workers)
        cold_s = time.perf_counter() - start
        start = time.perf_counter()
        warm = featurize(frame, "mp-cgcnn", workers=args.workers)
        warm_s = time.perf_counter() - start
        assert warm.from_cache and len(warm) == len(cold)
    rows = [
        {"step": "read CIF texts from tar", "crystals": len(frame), "seconds": read_s},
        {"step": f"featurise cold ({args.workers} workers)", "crystals": len(frame), "seconds": cold_s},
        {"step": "reload from graph cache", "crystals": len(warm), "seconds": warm_s},
    ]
    table = pd.DataFrame(rows)
    table["crystals/s"] = table["crystals"] / table["seconds"]
    table["skipped"] = [0, len(cold.skips), len(warm.skips)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.1f}"))
    print(f"peak memory of the main process: {peak:,.0f} MiB; cpu cores: {os.cpu_count()}")
    table = table.assign(peak_mib=round(peak), cores=os.cpu_count())
    caption = f"Featurisation of mp-cgcnn ({len(frame):,} crystals), {os.cpu_count()} cores"
    write_table(RESULTS_DIR / "benchmarks", "featurize", table, caption, ".1f")


if __name__ == "__main__":
    main()
