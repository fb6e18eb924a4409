"""Centralised training of several models on several targets and seeds, on the same crystals and splits.

This is the baseline the federated study is priced against: every (model, target, seed) run sees
the same crystals (those every model's graphs could be built for) and, for a given seed, the same
8:1:1 split. Each run lives in ``<out>/runs/<model>/<target>/seed<k>/`` with its checkpoints,
``split.json``, ``history.csv``, ``predictions.csv`` and ``metrics.json``; a finished run is read
back instead of retrained, so an interrupted study resumes where it stopped.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from mlib.data.errors import BadEntry
from mlib.data.skips import Skips
from mlib.graphs.featurize import GraphSet
from mlib.models.registry import MODELS, build_model
from mlib.parallel import run_jobs
from mlib.training import TrainConfig, fit_regressor

SPLIT = (0.8, 0.1, 0.1)
METRICS = ("mse", "rmse", "mae", "r2")


def common_crystals(sets: dict[str, GraphSet]) -> dict[str, GraphSet]:
    """Each graph set restricted to the crystals present in all of them, in the same order.

    A crystal missing from one kind of graph (for example an atom with no neighbour within a
    shorter cutoff) is dropped from every set and counted as a skip with the reason.
    """
    ids = {kind: graph_set.table["id"].astype(str).tolist() for kind, graph_set in sets.items()}
    shared = set.intersection(*(set(v) for v in ids.values()))
    out = {}
    for kind, graph_set in sets.items():
        rows = [i for i, entry in enumerate(ids[kind]) if entry in shared]
        kept, present = graph_set.subset(rows), set(ids[kind])
        kept.skips = Skips(strict=graph_set.skips.strict, records=list(graph_set.skips.records))
        for other, other_set in sets.items():
            for record in other_set.skips.records if other != kind else ():
                if record.entry_id in present:
                    kept.skips.add(BadEntry(record.entry_id, f"no {other} graph: {record.reason}", "graph",
                                            f"no {other} graph"))
        out[kind] = kept
    return out


def run_dir(out_dir: Path, model: str, target: str, seed: int) -> Path:
    return Path(out_dir) / "runs" / model / target / f"seed{seed}"


def train_one(model: str, hyper: dict, graph_set: GraphSet, target: str, config: TrainConfig,
              out_dir: Path) -> tuple[dict, pd.DataFrame]:
    """One run (or its saved result, if made with the same config, hyperparameters and number of crystals)."""
    folder = run_dir(out_dir, model, target, config.seed)
    done = folder / "metrics.json"
    if done.exists():
        saved = json.loads(done.read_text())
        same = (saved["config"] == asdict(config) and saved["hyper"] == json.loads(json.dumps(hyper))
                and saved["row"]["crystals"] == len(graph_set.with_finite(target)))
        if same:
            return saved["row"], pd.read_csv(folder / "predictions.csv")
    start = time.perf_counter()
    result = fit_regressor(lambda: build_model(model, **hyper), graph_set, target, config, folder,
                           formula_column="formula", fractions=SPLIT, progress=False)
    seconds = time.perf_counter() - start
    test = result.predictions[result.predictions["split"] == "test"]
    row = {"model": model, "target": target, "seed": config.seed, "crystals": len(result.data),
           "train": int((result.predictions["split"] == "train").sum()), "test": len(test),
           "mse": float(((test["pred"] - test["true"]) ** 2).mean()), "rmse": result.metrics["rmse"],
           "mae": result.metrics["mae"], "r2": result.metrics["r2"], "pearson_r": result.metrics["pearson_r"],
           "epochs": len(result.history), "best_epoch": int(result.history["val_mse"].idxmin()) + 1,
           "seconds": seconds}
    predictions = result.predictions.assign(model=model, target=target, seed=config.seed)
    result.history.to_csv(folder / "history.csv", index=False)
    predictions.to_csv(folder / "predictions.csv", index=False)
    done.write_text(json.dumps({"row": row, "config": asdict(config), "hyper": hyper}, indent=1))
    return row, predictions


def _train_job(sets: dict[str, GraphSet], model: str, hyper: dict, target: str, config: TrainConfig,
               out_dir: Path) -> tuple[dict, pd.DataFrame]:
    return train_one(model, hyper, sets[MODELS[model].graph_kind], target, config, out_dir)


def train_models(models: list[str], targets: list[str], seeds: list[int], sets: dict[str, GraphSet],
                 config: TrainConfig, out_dir: Path, hyper: dict[str, dict] | None = None,
                 workers: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every (model, target, seed): one row of test metrics each, and all predictions.

    ``sets`` maps a graph kind (``cgcnn``, ``matgl``) to the graph set of that kind; ``hyper`` maps a
    model to hyperparameters that override its defaults; ``config.seed`` is replaced by each seed.
    ``workers`` runs that many trainings at once in separate processes (one thread each: the same
    results as one by one on one thread).
    """
    hyper = hyper or {}
    jobs = [(m, hyper.get(m, {}), t, TrainConfig(**{**asdict(config), "seed": s}), Path(out_dir))
            for t in targets for s in seeds for m in models]
    done = run_jobs(_train_job, jobs, sets, workers, desc="runs")
    return pd.DataFrame([row for row, _ in done]), pd.concat([pred for _, pred in done], ignore_index=True)


def summarise(runs: pd.DataFrame, metrics: tuple[str, ...] = METRICS) -> pd.DataFrame:
    """Mean ± std over seeds of each metric, one row per model and target (with the number of seeds)."""
    rows = []
    for (model, target), group in runs.groupby(["model", "target"], sort=False):
        row = {"model": model, "target": target, "seeds": len(group), "test crystals": int(group["test"].iloc[0])}
        for metric in metrics:
            values = group[metric].to_numpy(dtype=float)
            row[metric.upper() if metric != "r2" else "R2"] = f"{values.mean():.4g} ± {values.std(ddof=1) if len(values) > 1 else 0:.2g}"
        row["seconds/run"] = round(float(group["seconds"].mean()))
        rows.append(row)
    return pd.DataFrame(rows)


def load_graph_sets(dataset: str, limit: int | None, models: list[str], workers: int = 1,
                    hyper: dict[str, dict] | None = None) -> dict[str, GraphSet]:
    """The graphs every model in ``models`` reads, restricted to the crystals all of them share."""
    from mlib import datasets
    from mlib.models.registry import graph_spec

    hyper = hyper or {}
    specs: dict[str, object] = {}
    for model in models:
        spec = graph_spec(model, **hyper.get(model, {}))
        if specs.setdefault(spec.kind, spec) != spec:
            raise ValueError(f"{model} needs {spec}, another model of the study {specs[spec.kind]}; "
                             "give models of one graph kind the same cutoff")
    sets = {kind: datasets.load_mp(dataset, limit=limit, spec=spec, workers=workers) for kind, spec in specs.items()}
    return common_crystals(sets)
