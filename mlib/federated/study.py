"""The federated study of 05_federated: models x targets x algorithms x seeds, a central baseline, partitions.

Every run lives in ``<out>/runs/<partition>/<algorithm>/<model>/<target>/seed<k>/`` with the global
model of its best round (``model.pt``, readable by :func:`mlib.embedding.load_model`), its per-round
``history.csv``, ``rounds.csv`` (each client's status every round), ``predictions.csv`` and
``summary.json``; a finished run is read back instead of retrained. The data split is the 8:1:1 split
of :mod:`mlib.model_study` for the same seed, so the central baseline (trained by
:func:`mlib.model_study.train_one` for rounds x local epochs epochs) sees the same crystals.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd
import torch

from mlib.federated.partition import anion_elements, describe, partition
from mlib.federated.simulation import FedConfig, Federation
from mlib.graphs.featurize import GraphSet
from mlib.model_study import SPLIT, train_one
from mlib.models.registry import MODELS, build_model
from mlib.parallel import run_jobs
from mlib.training import TrainConfig, split_indices

METRICS = ("mse", "rmse", "mae", "r2")
PAPER_TABLE1 = pd.DataFrame([
    {"target": "formation_energy_per_atom", "model": "m3gnet", "algorithm": "fedavg", "mae": 0.099, "r2": 0.975},
    {"target": "band_gap", "model": "m3gnet", "algorithm": "fedavg", "mae": 0.527, "r2": 0.757},
    {"target": "formation_energy_per_atom", "model": "gcn", "algorithm": "fedavg", "mae": 0.166, "r2": float("nan")},
])


def shards_for(graph_set: GraphSet, target: str, seed: int, scheme: str, clients: int, alpha: float) -> tuple[dict, list]:
    """The seeded 8:1:1 split and the partition of its training crystals among ``clients``."""
    split = split_indices(len(graph_set), seed, SPLIT)
    chemistry = anion_elements(graph_set.table["formula"]) if scheme == "chemistry" else None
    shards = partition(split["train"], clients, scheme, seed, chemistry=chemistry,
                       target=graph_set.target(target).numpy(), alpha=alpha)
    return split, shards


def run_federated(model: str, hyper: dict, graph_set: GraphSet, target: str, config: FedConfig, scheme: str,
                  clients: int, alpha: float, out_dir: Path) -> tuple[dict, pd.DataFrame]:
    """One federated run (or its saved result): a summary row and the per-round history."""
    folder = Path(out_dir) / "runs" / scheme / config.algorithm / model / target / f"seed{config.seed}"
    done = folder / "summary.json"
    key = {"config": asdict(config), "hyper": json.loads(json.dumps(hyper)), "clients": clients, "alpha": alpha,
           "crystals": len(graph_set)}
    if done.exists():
        saved = json.loads(done.read_text())
        if saved["key"] == key:
            return saved["row"], pd.read_csv(folder / "history.csv")
    graph_set = graph_set.with_finite(target)
    split, shards = shards_for(graph_set, target, config.seed, scheme, clients, alpha)
    start = time.perf_counter()
    federation = Federation(lambda: build_model(model, **hyper), graph_set.graphs, graph_set.target(target), split,
                            shards, config)
    history = federation.run(progress=False)
    summary = federation.summary()
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"name": model, "model": federation.model.state_dict(), "hyper": federation.model.hyper,
                "scaler": asdict(federation.scaler), "target": target, "config": asdict(config)}, folder / "model.pt")
    row = {"model": model, "target": target, "algorithm": config.algorithm, "partition": scheme, "seed": config.seed,
           "clients": clients, "crystals": len(graph_set), "test": len(split["test"]),
           **{m: summary[m] for m in METRICS}, "pearson_r": summary["pearson_r"], "best_round": summary["best_round"],
           "failed": summary["failed"], "rejected": summary["rejected"], "seconds": time.perf_counter() - start}
    folder.mkdir(parents=True, exist_ok=True)
    history.to_csv(folder / "history.csv", index=False)
    pd.DataFrame(federation.log).to_csv(folder / "rounds.csv", index=False)
    describe(shards, graph_set.target(target).numpy()).to_csv(folder / "clients.csv", index=False)
    pred = federation.predictions()
    pred.insert(0, "id", graph_set.table["id"].to_numpy()[pred["row"]])
    pred.drop(columns="row").to_csv(folder / "predictions.csv", index=False)
    done.write_text(json.dumps({"row": row, "key": key}, indent=1))
    return row, history


def _federated_job(sets: dict[str, GraphSet], model: str, hyper: dict, target: str, config: FedConfig, scheme: str,
                   clients: int, alpha: float, out_dir: Path) -> tuple[dict, pd.DataFrame]:
    return run_federated(model, hyper, sets[MODELS[model].graph_kind], target, config, scheme, clients, alpha, out_dir)


def _central_job(sets: dict[str, GraphSet], model: str, hyper: dict, target: str, config: TrainConfig,
                 out_dir: Path) -> dict:
    row, _ = train_one(model, hyper, sets[MODELS[model].graph_kind], target, config, out_dir)
    return {**row, "algorithm": "central"}


def run_study(models: list[str], targets: list[str], algorithms: list[str], seeds: list[int], scheme: str,
              sets: dict[str, GraphSet], base: FedConfig, clients: int, alpha: float, out_dir: Path,
              hyper: dict[str, dict] | None = None, workers: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every (model, target, algorithm, seed) on one partition: summary rows and per-round histories.

    ``workers`` runs that many federations at once in separate processes (one thread each: the same
    results as one by one on one thread).
    """
    hyper = hyper or {}
    jobs = [(m, hyper.get(m, {}), t, replace(base, algorithm=a, seed=s), scheme, clients, alpha, Path(out_dir))
            for t in targets for s in seeds for a in algorithms for m in models]
    done = run_jobs(_federated_job, jobs, sets, workers, desc=f"federated runs ({scheme})")
    histories = [history.assign(model=job[0], target=job[2], algorithm=job[3].algorithm, seed=job[3].seed,
                                partition=scheme) for job, (_, history) in zip(jobs, done)]
    return pd.DataFrame([row for row, _ in done]), pd.concat(histories, ignore_index=True)


def run_central(models: list[str], targets: list[str], seeds: list[int], sets: dict[str, GraphSet], base: FedConfig,
                out_dir: Path, hyper: dict[str, dict] | None = None, workers: int = 1) -> pd.DataFrame:
    """The central baseline: all training crystals on one machine for rounds x local epochs epochs."""
    hyper = hyper or {}
    jobs = [(m, hyper.get(m, {}), t, TrainConfig(epochs=base.rounds * base.local_epochs, batch_size=base.batch_size,
                                                  lr=base.lr, seed=s), Path(out_dir))
            for t in targets for s in seeds for m in models]
    return pd.DataFrame(run_jobs(_central_job, jobs, sets, workers, desc="central runs"))


def table1(federated: pd.DataFrame, central: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds of MSE, RMSE, MAE, R2 per target, model and algorithm, with the central MAE and R2."""
    def fmt(values: pd.Series) -> str:
        values = values.astype(float)
        return f"{values.mean():.4g} ± {values.std(ddof=1) if len(values) > 1 else 0:.2g}"

    rows = []
    for (target, model, algorithm), group in federated.groupby(["target", "model", "algorithm"], sort=False):
        base = central[(central["target"] == target) & (central["model"] == model)]
        rows.append({"target": target, "model": model, "algorithm": algorithm, "seeds": len(group),
                     **{m.upper() if m != "r2" else "R2": fmt(group[m]) for m in METRICS},
                     "central MAE": fmt(base["mae"]) if len(base) else "", "central R2": fmt(base["r2"]) if len(base) else ""})
    return pd.DataFrame(rows)


def beside_paper(federated: pd.DataFrame) -> pd.DataFrame:
    """This study's mean MAE and R2 next to the figures the federated paper reports."""
    ours = federated.groupby(["target", "model", "algorithm"], as_index=False)[["mae", "r2"]].mean()
    merged = PAPER_TABLE1.merge(ours, on=["target", "model", "algorithm"], how="left", suffixes=(" (paper)", " (this study)"))
    return merged


def partition_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Test MAE (mean ± std over seeds) by partition and algorithm: what non-IID data costs."""
    stats = runs.groupby(["model", "target", "partition", "algorithm"], sort=False)["mae"].agg(["mean", "std", "count"])
    return stats.reset_index().rename(columns={"mean": "MAE mean", "std": "MAE std", "count": "seeds"})


def partitions_overview(graph_set: GraphSet, target: str, seed: int, schemes: list[str], clients: int,
                        alpha: float) -> pd.DataFrame:
    """Each client's crystals, target mean and chemistry under every partition (one seed)."""
    frames = []
    chemistry = anion_elements(graph_set.table["formula"])
    for scheme in schemes:
        _, shards = shards_for(graph_set, target, seed, scheme, clients, alpha)
        frames.append(describe(shards, graph_set.target(target).numpy(), chemistry).assign(partition=scheme))
    out = pd.concat(frames, ignore_index=True)
    return out[["partition", *[c for c in out.columns if c != "partition"]]]


def round_log(out_dir: Path) -> pd.DataFrame:
    """Every client status that was not ``ok`` in any run (failures, rejections, clients with no data)."""
    frames = [pd.read_csv(path).assign(run=str(path.parent.relative_to(out_dir)))
              for path in sorted(Path(out_dir).glob("runs/*/*/*/*/seed*/rounds.csv"))]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["status"])
    return table[table["status"] != "ok"].reset_index(drop=True)
