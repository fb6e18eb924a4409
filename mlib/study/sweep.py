"""03_sweep: the paper's CGCNN grid on Optuna (exhaustive, or TPE with pruning), its best configurations and cost.

The study lives in an Optuna RDB storage: by default a SQLite file in the run store
(``<store>/03_sweep/<study_name>.db``), so a rerun completes the same study to ``n_trials`` finished
trials instead of starting over, and more workers can join it (``python -m mlib.sweep``).
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd

from mlib import datasets, plots, published, sweep
from mlib.catalogue import THERMAL_TARGET
from mlib.graphs.featurize import GraphSet
from mlib.graphs.neighbors import GraphSpec
from mlib.outputs import Run
from mlib.params import SweepParams

NOTEBOOK = "03_sweep"


def storage_url(P: SweepParams) -> str:
    """``storage``, or a SQLite file of the study in the run store."""
    if P.storage:
        return P.storage
    path = Path(P.store_dir) / NOTEBOOK / f"{P.study_name}.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


def graphs(P: SweepParams) -> tuple[GraphSet, str]:
    """The thermal graphs the sweep trains on, and the caption fragment naming them."""
    spec = GraphSpec(radius=P.radius, max_neighbors=P.max_neighbors, tie_order=P.tie_order)
    graph_set = datasets.load_thermal(P.dataset, spec=spec, workers=P.workers).graphs.first(P.thermal_limit)
    return graph_set, graph_set.label


def search(P: SweepParams, run: Run, graph_set: GraphSet, where: str) -> pd.DataFrame:
    """Run (or complete) the study; tables of every trial, the top 10 and the best beside the paper's."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # trials are reported by the tables, not by log lines
    space = P.space()
    study = sweep.make_study(P.study_name, storage_url(P), space, P.sampler, P.pruner, P.epochs, P.seed)
    print(f"{space.size()} configurations; {len(study.trials)} trials already in the study", flush=True)
    sweep.run_worker(
        study,
        graph_set.graphs,
        graph_set.target(THERMAL_TARGET),
        space,
        P.epochs,
        P.seed,
        P.n_trials,
        P.timeout_min * 60 if P.timeout_min else None,
    )
    trials = sweep.trials_table(study)
    run.save_table(trials, "trials", f"All trials ({P.sampler}, pruner {P.pruner}): {where}", markdown=False)
    finished = trials[trials["state"] == "COMPLETE"].sort_values("val_r", ascending=False)
    run.save_table(finished.head(10), "top10", f"Top 10 configurations by validation R: {where}")
    best = pd.DataFrame(
        [
            {"run": "this sweep", **study.best_params, "val_r": study.best_value},
            {"run": "paper", **published.CGCNN_THERMAL_BEST},
        ]
    )
    run.save_table(best, "best_config", f"Best configuration, beside the paper's: {where}")
    return trials


def figures(P: SweepParams, run: Run, trials: pd.DataFrame, where: str) -> pd.DataFrame:
    """Validation R against each hyperparameter, the hidden x lr heat map, and the cost against the full grid."""
    space = P.space()
    finished = trials[trials["state"] == "COMPLETE"]
    run.save_figure(
        plots.sweep_scatter(trials.dropna(subset=["val_r"]), list(space.grid())),
        "val_r_by_param",
        f"Validation R of every trial against each hyperparameter, {where}",
    )
    run.save_figure(
        plots.sweep_heatmap(finished), "heatmap_hidden_lr", f"Best validation R by hidden size and lr, {where}"
    )
    return run.save_table(
        sweep.cost_summary(trials, space, P.epochs),
        "cost",
        f"CPU-hours of this search vs the exhaustive grid (projected), {where}",
    )
