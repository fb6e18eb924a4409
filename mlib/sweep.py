"""Hyperparameter sweeps of CGCNN on Optuna: the paper's exact grid, or a pruned search.

The objective is the validation Pearson R of the best epoch (the paper's choice); the test split is
never touched here. Studies live in an Optuna RDB storage: a SQLite file by default (an interrupted
sweep resumes and finished trials are never redone), or any RDB URL (PostgreSQL) shared by many
workers on many machines. Workers send heartbeats; the trial of a worker that died is marked failed
and retried by the next worker.

    python -m mlib.sweep --storage sqlite:///results/sweep.db --study cgcnn-grid --sampler grid --epochs 200
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from mlib.models.cgcnn import CGCNN
from mlib.training import TrainConfig, Trainer, seed_everything, split_indices

PAPER_GRID = {"conv_layers": [2, 3, 4], "batch_size": [2, 4, 8, 16, 32, 64], "hidden": [2, 4, 8, 16, 32, 64],
              "lr": [0.1, 0.01, 0.001]}  # the paper's ranges 2^1..2^5 plus 64, its reported best


class SweepError(ValueError):
    """A bad search space or sweep setting."""


@dataclass(frozen=True)
class SearchSpace:
    """Values tried per hyperparameter (categorical, as in the paper's grid)."""

    conv_layers: list[int] = field(default_factory=lambda: list(PAPER_GRID["conv_layers"]))
    batch_size: list[int] = field(default_factory=lambda: list(PAPER_GRID["batch_size"]))
    hidden: list[int] = field(default_factory=lambda: list(PAPER_GRID["hidden"]))
    lr: list[float] = field(default_factory=lambda: list(PAPER_GRID["lr"]))

    def __post_init__(self) -> None:
        for name, values in asdict(self).items():
            if not isinstance(values, list) or not values:
                raise SweepError(f"search space {name!r} must be a non-empty list, got {values!r}")
            if any(isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 for v in values):
                raise SweepError(f"search space {name!r} needs positive numbers, got {values!r}")
            if name != "lr" and any(not isinstance(v, int) for v in values):
                raise SweepError(f"search space {name!r} needs whole numbers, got {values!r}")

    @classmethod
    def from_dict(cls, values: dict) -> "SearchSpace":
        unknown = sorted(set(values) - set(PAPER_GRID))
        if unknown:
            raise SweepError(f"unknown hyperparameter(s) {unknown} in the search space; known: {sorted(PAPER_GRID)}")
        return cls(**values)

    def grid(self) -> dict[str, list]:
        return asdict(self)

    def size(self) -> int:
        return int(np.prod([len(v) for v in self.grid().values()]))


def storage(url: str, heartbeat: int = 60) -> RDBStorage:
    """Optuna RDB storage with heartbeats: a dead worker's running trial is failed and retried once."""
    with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna 5
        warnings.simplefilter("ignore", ExperimentalWarning)
        return RDBStorage(url, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))


def make_study(name: str, url: str, space: SearchSpace, sampler: str = "grid", pruner: str = "none",
               epochs: int = 200, seed: int = 0, heartbeat: int = 60) -> optuna.Study:
    """Create or load a study (maximising validation R)."""
    samplers = {"grid": lambda: optuna.samplers.GridSampler(space.grid(), seed=seed),
                "tpe": lambda: optuna.samplers.TPESampler(seed=seed)}
    pruners = {"none": optuna.pruners.NopPruner,
               "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=max(1, epochs // 20), max_resource=epochs),
               "halving": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, epochs // 20))}
    if sampler not in samplers:
        raise SweepError(f"unknown sampler {sampler!r}; choose from {sorted(samplers)}")
    if pruner not in pruners:
        raise SweepError(f"unknown pruner {pruner!r}; choose from {sorted(pruners)}")
    return optuna.create_study(study_name=name, storage=storage(url, heartbeat), direction="maximize",
                               sampler=samplers[sampler](), pruner=pruners[pruner](), load_if_exists=True)


def objective(graphs: list, y, split: dict[str, np.ndarray], space: SearchSpace, epochs: int, seed: int):
    """The Optuna objective: train one configuration, report validation MSE per epoch, return val R."""
    def run(trial: optuna.Trial) -> float:
        hyper = {name: trial.suggest_categorical(name, values) for name, values in space.grid().items()}
        _skip_if_duplicate(trial, hyper)
        seed_everything(seed)
        start = time.perf_counter()
        folder = Path(tempfile.mkdtemp(prefix="mlib-trial-"))
        try:
            trainer = Trainer(CGCNN(hidden=hyper["hidden"], n_conv=hyper["conv_layers"]), graphs, y, split,
                              TrainConfig(epochs=epochs, batch_size=hyper["batch_size"], lr=hyper["lr"], seed=seed),
                              folder)

            def report(record: dict[str, float]) -> None:
                trial.set_user_attr("epochs_run", int(record["epoch"]))
                trial.set_user_attr("seconds", time.perf_counter() - start)
                trial.set_user_attr("val_mse", trainer.best_val)
                trial.report(record["val_mse"], int(record["epoch"]))
                if trial.should_prune():
                    raise optuna.TrialPruned()

            trainer.fit(progress=False, on_epoch=report)
            trainer.load_best()
            metrics, _, _ = trainer.evaluate("val")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return metrics["pearson_r"]
    return run


def _skip_if_duplicate(trial: optuna.Trial, hyper: dict) -> None:
    """Two workers can draw the same grid point at once; the later trial yields to the earlier one."""
    live = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)
    for other in trial.study.get_trials(deepcopy=False, states=live):
        if other.number < trial.number and other.params == hyper:
            trial.set_user_attr("duplicate_of", other.number)
            raise optuna.TrialPruned(f"same configuration as trial {other.number}")


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """Every trial: parameters, state, validation R (finished trials), best validation MSE, epochs, seconds."""
    complete = optuna.trial.TrialState.COMPLETE
    rows = [{"trial": t.number, "state": t.state.name, **t.params, "val_r": t.value if t.state == complete else None,
             "val_mse": t.user_attrs.get("val_mse"), "epochs_run": t.user_attrs.get("epochs_run"),
             "seconds": t.user_attrs.get("seconds")} for t in study.trials]
    return pd.DataFrame(rows)


def cost_summary(trials: pd.DataFrame, space: SearchSpace, epochs: int) -> pd.DataFrame:
    """CPU-hours of this search against the exhaustive grid (projected from the measured epoch times).

    The projection multiplies each finished trial's seconds per epoch, averaged, by ``epochs`` and the
    grid size: an estimate, labelled as such.
    """
    done = trials[trials["state"].isin(["COMPLETE", "PRUNED"]) & trials["seconds"].notna()]
    per_epoch = float((done["seconds"] / done["epochs_run"]).mean()) if len(done) else float("nan")
    best = trials["val_r"].max()
    return pd.DataFrame([
        {"search": "this search", "trials": len(done), "epochs trained": int(done["epochs_run"].sum()),
         "cpu_hours": float(done["seconds"].sum()) / 3600, "best val R": best, "measured": True},
        {"search": "exhaustive grid (projected)", "trials": space.size(), "epochs trained": space.size() * epochs,
         "cpu_hours": per_epoch * epochs * space.size() / 3600, "best val R": float("nan"), "measured": False}])


def run_worker(study: optuna.Study, graphs: list, y, space: SearchSpace, epochs: int, seed: int,
               n_trials: int | None = None, timeout: float | None = None) -> None:
    """One worker: pull trials from the shared study until the grid, ``n_trials`` or ``timeout`` ends."""
    split = split_indices(len(graphs), seed)
    study.optimize(objective(graphs, y, split, space, epochs, seed), n_trials=n_trials, timeout=timeout,
                   catch=(RuntimeError,))


def main(argv: Sequence[str] | None = None) -> int:
    from mlib import datasets

    parser = argparse.ArgumentParser(prog="python -m mlib.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", required=True, help="Optuna RDB URL, e.g. sqlite:///sweep.db or postgresql://...")
    parser.add_argument("--study", required=True)
    parser.add_argument("--sampler", default="grid", choices=["grid", "tpe"])
    parser.add_argument("--pruner", default="none", choices=["none", "hyperband", "halving"])
    parser.add_argument("--dataset", default="aflow")
    parser.add_argument("--limit", type=int, default=None, help="first N crystals only (a labelled subset)")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--n-trials", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=None, help="seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heartbeat", type=int, default=60, help="seconds between worker heartbeats")
    args = parser.parse_args(argv)
    graphs = datasets.load_thermal(args.dataset).graphs
    if args.limit is not None:
        graphs = graphs.subset(range(min(args.limit, len(graphs))))
    space = SearchSpace()
    study = make_study(args.study, args.storage, space, args.sampler, args.pruner, args.epochs, args.seed, args.heartbeat)
    run_worker(study, graphs.graphs, graphs.target(datasets.TARGET), space, args.epochs, args.seed,
               args.n_trials, args.timeout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
