"""What each notebook of a profile cost, measured: the runner's sittings and the run store's runs.

The runner adds a line to ``<store>/<notebook>/sittings.csv`` for every sitting of a notebook (UTC start,
wall seconds, finished / interrupted / failed), so a notebook completed over several sittings has its
total wall time. Each finished run in the store records its training seconds over every sitting of a
resumed run (one-thread workers: core-seconds). :func:`write` tabulates both per notebook as
``results/<profile>/measured_time.csv`` (and ``.md`` for the README).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from mlib import catalogue, store
from mlib.outputs import write_table
from mlib.provenance import finished

SITTINGS = "sittings.csv"
TABLE = "measured_time"
_HEADER = "started,seconds,outcome\n"


def log_sitting(store_root: Path, notebook: str, started: float, outcome: str) -> Path:
    """Add one sitting of ``notebook`` (``started``: a ``time.time()``; ``outcome``: finished, interrupted or
    failed) to its log in the run store."""
    log = Path(store_root) / notebook / SITTINGS
    begun = datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    old = log.read_text() if log.exists() else _HEADER
    return store.write_text(log, f"{old}{begun},{time.time() - started:.0f},{outcome}\n")


def run_core_seconds(store_root: Path, notebook: str) -> tuple[int, float]:
    """Finished runs of ``notebook`` in the store and the sum of their recorded seconds (every sitting)."""
    seconds = [
        json.loads(path.read_text())["record"].get("seconds", 0.0)
        for path in (Path(store_root) / notebook).rglob(store.RECORD)
    ]
    return len(seconds), float(sum(seconds))


def measured(profile_root: Path) -> pd.DataFrame:
    """One row per notebook: whether it is published and the wall time of the sitting that published it, every
    sitting logged for it (interrupted ones and reruns that only read runs back included) and their wall hours,
    its runs and their core-hours (03_sweep's search trials, kept in its Optuna storage, counted from its published trials)."""
    store_root = Path(profile_root) / "store"
    rows = []
    for notebook in catalogue.NOTEBOOKS:
        results = Path(profile_root) / notebook
        provenance = results / "provenance.json"
        record = json.loads(provenance.read_text()) if provenance.exists() else {}
        published = finished(results)
        log = store_root / notebook / SITTINGS
        sittings = pd.read_csv(log) if log.exists() else pd.DataFrame(columns=["seconds"])
        runs, seconds = run_core_seconds(store_root, notebook)
        trials = results / "trials.csv"
        if published and trials.exists():
            seconds += float(pd.read_csv(trials)["seconds"].sum())
        rows.append(
            {
                "notebook": notebook,
                "published": "yes" if published else "not yet",
                "wall hours (publishing sitting)": (record.get("wall_time_s") or float("nan")) / 3600,
                "sittings logged": len(sittings),
                "wall hours (all logged sittings)": sittings["seconds"].sum() / 3600 if len(sittings) else float("nan"),
                "finished runs in the store": runs,
                "core-hours of its runs": seconds / 3600,
            }
        )
    return pd.DataFrame(rows)


def write(profile_root: Path) -> pd.DataFrame:
    """Write ``measured_time.csv`` / ``.md`` under ``profile_root`` (``results/<profile>``)."""
    table = measured(profile_root)
    caption = (
        f"Measured cost of each notebook of the {Path(profile_root).name} profile: wall time of the sitting that "
        "published its results and of every sitting the runner logged for it, and the training time its "
        "finished runs recorded over every sitting (one-thread workers: core-hours)"
    )
    write_table(Path(profile_root), TABLE, table, caption, ".3g")
    return table
