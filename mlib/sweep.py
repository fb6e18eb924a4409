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
import hashlib
import json
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from mlib import catalogue, model_file, store
from mlib.catalogue import THERMAL_TARGET
from mlib.graphs.featurize import GraphSet
from mlib.models.registry import MODEL_CODE_VERSION, build_model
from mlib.params import ParameterError, SearchSpace, TrainConfig
from mlib.training import Trainer, seed_everything, split_indices

DIVERGED_WINDOW = 10  # epochs in a row no better than the training mean before a trial counts as diverged


class SweepError(ValueError):
    """A bad sweep setting."""


class DivergedPruner(optuna.pruners.BasePruner):
    """Prunes only a trial that has diverged: its validation MSE (standardised target) is not finite, or has been
    no better than predicting the training mean (MSE >= 1) at each of its last ``window`` reported epochs. A slow
    starter is never pruned, however far behind the other trials it is."""

    def __init__(self, window: int = DIVERGED_WINDOW) -> None:
        self.window = window

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        values = [trial.intermediate_values[step] for step in sorted(trial.intermediate_values)]
        if values and not np.isfinite(values[-1]):
            return True
        return len(values) >= self.window and all(v >= 1.0 for v in values[-self.window :])


@lru_cache(maxsize=8)
def storage(url: str, heartbeat: int = 60) -> RDBStorage:
    """Optuna RDB storage with heartbeats: a dead worker's running trial is failed and retried once. Opened once per
    process and URL (checking a URL early and then making the study share one connection pool)."""
    with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna 5
        warnings.simplefilter("ignore", ExperimentalWarning)
        return RDBStorage(
            url,
            heartbeat_interval=heartbeat,
            grace_period=2 * heartbeat,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
        )


def study_inputs(
    graph_set: GraphSet, space: SearchSpace, epochs: int, seed: int, sampler: str, pruner: str, atom_features: str
) -> dict:
    """Everything a study's trials depend on: data set, crystals and targets (digest), graphs, search space,
    epochs, training seed, sampler, pruner, atom features, training choices and model code. Recorded in the
    study; a worker with other inputs is refused (:func:`make_study`)."""
    return store.canonical(
        {
            "data": graph_set.data_key(THERMAL_TARGET),
            "graph": model_file.graph_info(graph_set.spec),
            "space": space.grid(),
            "epochs": epochs,
            "seed": seed,
            "sampler": sampler,
            "pruner": pruner,
            "atom_features": atom_features,
            "training": catalogue.TRAINING_CHOICES,
            "model_code_version": MODEL_CODE_VERSION,
        }
    )


def inputs_digest(inputs: dict) -> str:
    """A short digest of a study's inputs (the notebook's study names end with it)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:10]


def make_study(
    name: str,
    url: str,
    space: SearchSpace,
    inputs: dict,
    sampler: str = "grid",
    pruner: str = "none",
    epochs: int = 200,
    seed: int = 0,
    heartbeat: int = 60,
) -> optuna.Study:
    """Create or load a study (maximising validation R) whose trials depend on ``inputs`` (:func:`study_inputs`);
    a study of that name made with other inputs is refused with :class:`SweepError` saying what differs."""
    samplers = {
        "grid": lambda: optuna.samplers.GridSampler(space.grid(), seed=seed),
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
    }
    pruners = {
        "none": optuna.pruners.NopPruner,
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=max(1, epochs // 20), max_resource=epochs),
        "halving": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, epochs // 20)),
        "diverged": DivergedPruner,
    }
    if sampler not in samplers:
        raise SweepError(f"unknown sampler {sampler!r}; choose from {sorted(samplers)}")
    if pruner not in pruners:
        raise SweepError(f"unknown pruner {pruner!r}; choose from {sorted(pruners)}")
    study = optuna.create_study(
        study_name=name,
        storage=storage(url, heartbeat),
        direction="maximize",
        sampler=samplers[sampler](),
        pruner=pruners[pruner](),
        load_if_exists=True,
    )
    check_inputs(study, store.canonical(inputs), url)
    return study


def check_inputs(study: optuna.Study, inputs: dict, url: str) -> None:
    """Record ``inputs`` in a new study; refuse an existing study made with other inputs. A study that records
    none (made before they were recorded) is adopted only when empty or when its name carries their digest."""
    recorded = study.user_attrs.get("inputs")
    if recorded is None:
        if study.trials and not study.study_name.endswith(f"-{inputs_digest(inputs)}"):
            raise SweepError(
                f"study {study.study_name!r} in {url} holds {len(study.trials)} trials but does not record what "
                "they were trained on (made by an older mlib): its trials cannot be told apart from these inputs'; "
                "give another --study name"
            )
        study.set_user_attr("inputs", inputs)
    elif recorded != inputs:
        changed = "; ".join(store.differences(recorded, inputs)[:6])
        raise SweepError(
            f"study {study.study_name!r} in {url} was made with other inputs ({changed}); its trials would be mixed "
            "with this worker's: give another --study name, or the study's own settings"
        )


def objective(
    graphs: list, y, split: dict[str, np.ndarray], space: SearchSpace, epochs: int, seed: int, atom_features: str
):
    """The Optuna objective: train one configuration, report validation MSE per epoch, return val R."""

    def run(trial: optuna.Trial) -> float:
        hyper = {name: trial.suggest_categorical(name, values) for name, values in space.grid().items()}
        _skip_if_duplicate(trial, hyper)
        seed_everything(seed)
        start = time.perf_counter()
        folder = Path(tempfile.mkdtemp(prefix="mlib-trial-"))
        try:
            model = build_model(
                "cgcnn", hidden=hyper["hidden"], n_conv=hyper["conv_layers"], atom_features=atom_features
            )
            trainer = Trainer(
                model,
                graphs,
                y,
                split,
                TrainConfig(epochs=epochs, batch_size=hyper["batch_size"], lr=hyper["lr"], seed=seed),
                folder,
            )

            def report(record: dict[str, float]) -> None:
                trial.set_user_attr("epochs_run", int(record["epoch"]))
                trial.set_user_attr("seconds", time.perf_counter() - start)
                trial.set_user_attr("val_mae", min(h["val_mae"] for h in trainer.history))
                trial.report(record["val_mse"], int(record["epoch"]))
                _skip_if_duplicate(trial, hyper)  # an earlier trial that drew the same point meanwhile
                if trial.should_prune():
                    raise optuna.TrialPruned()

            trainer.fit(show=False, on_epoch=report)
            trainer.load_best()
            metrics, _, _ = trainer.evaluate("val")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return metrics["pearson_r"]

    return run


def _skip_if_duplicate(trial: optuna.Trial, hyper: dict) -> None:
    """A point drawn again yields to the earlier trial of it, finished, pruned or running: TPE can propose a
    point it has tried (training is seeded, so a rerun repeats it), and two workers can draw one at once.

    Checked when the trial starts and after every epoch (the last one included): a trial numbered before
    it may draw its point late (its worker descheduled on a loaded machine), so the later of two workers
    that drew the same point at once yields as soon as the earlier one's point is in the storage."""
    states = optuna.trial.TrialState
    live = (states.COMPLETE, states.PRUNED, states.RUNNING)
    for other in trial.study.get_trials(deepcopy=False, states=live):
        if other.number < trial.number and other.params == hyper:
            trial.set_user_attr("duplicate_of", other.number)
            raise optuna.TrialPruned(f"same configuration as trial {other.number}")


def trials_table(study: optuna.Study, epochs: int) -> pd.DataFrame:
    """Every trial: parameters, state, validation R (finished trials), lowest validation MAE, epochs, seconds,
    and why a trial did not complete (a failed trial that ran all ``epochs`` ended with constant
    predictions, so an undefined R; one that did not was stopped with its worker)."""
    complete = optuna.trial.TrialState.COMPLETE
    rows = [
        {
            "trial": t.number,
            "state": t.state.name,
            **t.params,
            "val_r": t.value if t.state == complete else None,
            "val_mae": t.user_attrs.get("val_mae"),
            "epochs_run": t.user_attrs.get("epochs_run"),
            "seconds": t.user_attrs.get("seconds"),
            "note": _note(t, epochs),
        }
        for t in study.trials
    ]
    return pd.DataFrame(rows)


def _note(trial: optuna.trial.FrozenTrial, epochs: int) -> str:
    states = optuna.trial.TrialState
    if "duplicate_of" in trial.user_attrs:
        return f"same configuration as trial {trial.user_attrs['duplicate_of']}"
    if trial.state == states.FAIL:
        if trial.user_attrs.get("epochs_run") == epochs:
            return "diverged: constant validation predictions, R undefined"
        return "stopped with its worker (interrupted run); the point was free to be drawn again"
    if trial.state == states.PRUNED:
        return f"pruned after epoch {trial.last_step}" if trial.last_step is not None else "pruned"
    return ""


def cost_summary(trials: pd.DataFrame, space: SearchSpace, epochs: int) -> pd.DataFrame:
    """CPU-hours of this search against the exhaustive grid (projected from the measured epoch times).

    The projection multiplies each finished trial's seconds per epoch, averaged, by ``epochs`` and the
    grid size: an estimate, labelled as such.
    """
    done = trials[trials["state"].isin(["COMPLETE", "PRUNED"]) & trials["seconds"].notna()]
    per_epoch = float((done["seconds"] / done["epochs_run"]).mean()) if len(done) else float("nan")
    best = trials["val_r"].max()
    return pd.DataFrame(
        [
            {
                "search": "this search",
                "trials": len(done),
                "epochs trained": int(done["epochs_run"].sum()),
                "cpu_hours": float(done["seconds"].sum()) / 3600,
                "best val R": best,
                "measured": True,
            },
            {
                "search": "exhaustive grid (projected)",
                "trials": space.size(),
                "epochs trained": space.size() * epochs,
                "cpu_hours": per_epoch * epochs * space.size() / 3600,
                "best val R": float("nan"),
                "measured": False,
            },
        ]
    )


def run_worker(
    study: optuna.Study,
    graphs: list,
    y,
    space: SearchSpace,
    epochs: int,
    seed: int,
    n_trials: int | None = None,
    timeout: float | None = None,
    atom_features: str = catalogue.CGCNN_DEFAULTS["atom_features"],
    own_trials: int | None = None,
) -> None:
    """One worker: pull trials from the shared study until the grid ends, the study holds ``n_trials``
    finished trials (complete or pruned, counting those of earlier runs and other workers), this worker has
    run ``own_trials``, or ``timeout``."""
    split = split_indices(len(graphs), seed)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=finished))
    if n_trials is not None and done >= n_trials:
        return
    callbacks = [optuna.study.MaxTrialsCallback(n_trials, states=finished)] if n_trials is not None else []
    study.optimize(
        objective(graphs, y, split, space, epochs, seed, atom_features),
        n_trials=own_trials,
        timeout=timeout,
        callbacks=callbacks,
        catch=(RuntimeError,),
    )


def main(argv: Sequence[str] | None = None) -> int:
    from mlib import datasets

    parser = argparse.ArgumentParser(
        prog="python -m mlib.sweep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--storage", required=True, help="Optuna RDB URL, e.g. sqlite:///sweep.db or postgresql://...")
    parser.add_argument("--study", required=True)
    parser.add_argument("--sampler", default="grid", choices=catalogue.SAMPLERS)
    parser.add_argument("--pruner", default="none", choices=catalogue.PRUNERS)
    parser.add_argument("--dataset", default="aflow", choices=list(catalogue.THERMAL_DATASETS))
    parser.add_argument("--limit", type=int, default=None, help="first N crystals only (a labelled subset)")
    parser.add_argument(
        "--space",
        type=json.loads,
        default=None,
        help="narrow the paper's grid (the notebook's search_space), e.g. '{\"hidden\": [32, 64]}'",
    )
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--n-trials", type=int, default=None, help="finished trials the study should hold")
    parser.add_argument("--timeout", type=float, default=None, help="seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--atom-features", default=catalogue.CGCNN_DEFAULTS["atom_features"], choices=catalogue.ATOM_FEATURE_SOURCES
    )
    parser.add_argument("--heartbeat", type=int, default=60, help="seconds between worker heartbeats")
    args = parser.parse_args(argv)
    try:
        space = SearchSpace.from_dict(args.space)
        storage(args.storage, args.heartbeat)
    except ParameterError as exc:
        parser.exit(2, f"error: {exc}\n")
    except Exception as exc:  # the storage URL: bad scheme, unreachable server, missing driver
        parser.exit(2, f"error: cannot open the study storage {args.storage!r}: {type(exc).__name__}: {exc}\n")
    graph_set = datasets.load_thermal(args.dataset, limit=args.limit).graphs.with_finite(THERMAL_TARGET)
    inputs = study_inputs(graph_set, space, args.epochs, args.seed, args.sampler, args.pruner, args.atom_features)
    try:
        study = make_study(
            args.study, args.storage, space, inputs, args.sampler, args.pruner, args.epochs, args.seed, args.heartbeat
        )
    except SweepError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"study {args.study}: {len(study.trials)} trials so far; this worker trains on {graph_set.label}", flush=True)
    run_worker(
        study,
        graph_set.graphs,
        graph_set.target(THERMAL_TARGET),
        space,
        args.epochs,
        args.seed,
        args.n_trials,
        args.timeout,
        args.atom_features,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
