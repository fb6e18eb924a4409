"""02_train: CGCNN on thermal expansion (the paper's Figure 3), checked on MP formation energy.

Both models are runs of the store (``<store>/02_train/thermal/<dataset>/``, ``<store>/02_train/mp/<dataset>/
<target>/``): an
interrupted run resumes from its last checkpoint, a finished one is read back when its key matches.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlib import catalogue, datasets, plots, published
from mlib.catalogue import THERMAL_TARGET
from mlib.graphs.neighbors import GraphSpec
from mlib.models.registry import build_model
from mlib.outputs import Run
from mlib.params import TrainConfig, TrainParams
from mlib.training import FitResult, fit_regressor

NOTEBOOK = "02_train"


def thermal_model_file(store_dir: str | Path, dataset: str) -> Path:
    """Where the run store keeps 02_train's thermal-expansion model of a data set (read by 04_embed)."""
    return Path(store_dir) / NOTEBOOK / "thermal" / dataset / "model.pt"


def _config(P: TrainParams, epochs: int) -> TrainConfig:
    return TrainConfig(
        epochs=epochs,
        batch_size=P.batch_size,
        lr=P.lr,
        weight_decay=P.weight_decay,
        seed=P.seed,
        lr_schedule=P.lr_schedule,
        best_by=P.best_by,
    )


def _model(P: TrainParams):
    return lambda: build_model("cgcnn", hidden=P.hidden, n_conv=P.conv_layers, head_hidden=P.head_hidden)


def report(run: Run, result: FitResult, target: str, name: str, paper: dict) -> pd.DataFrame:
    """Metrics beside the paper, predictions, learning curves and a parity plot of one run."""
    graphs = result.data
    test = result.predictions[result.predictions["split"] == "test"]
    where = f"{graphs.label} (test {len(test):,})"
    info = catalogue.target(target)
    no_target = sum(entry.stage == "target" for entry in graphs.skips.records)
    metrics = pd.DataFrame(
        [
            {
                "run": "this study",
                "dataset": where,
                **result.metrics,
                "epochs": len(result.history),
                "skipped (no finite target)": no_target,
            },
            {"run": "paper", **paper},
        ]
    )
    run.save_table(metrics, f"{name}_metrics", f"CGCNN test metrics, {info.display} ({info.unit}): {where}")
    run.save_table(
        result.predictions, f"{name}_predictions", f"Predictions, {info.display} ({info.unit}): {where}", markdown=False
    )
    run.save_table(result.history, f"{name}_history", f"Learning curves, {info.display}: {where}", markdown=False)
    r, paper_r = result.metrics["pearson_r"], paper.get("pearson_r")
    beside = f" (paper: {paper_r:.4f})" if paper_r is not None else ""
    fig = plots.parity(
        test["true"].to_numpy(), test["pred"].to_numpy(), info, f"CGCNN, {where}\ntest R = {r:.4f}{beside}"
    )
    run.save_figure(fig, f"{name}_parity", f"Test parity plot, {info.display}, {where}")
    run.save_figure(
        plots.learning_curves(result.history, f"CGCNN, {where}"),
        f"{name}_learning_curves",
        f"Train and validation MSE per epoch, {info.display}, {where}",
    )
    return metrics


def thermal(P: TrainParams, run: Run) -> pd.DataFrame:
    """CGCNN on the thermal-expansion set at the notebook's setting, beside the paper's test R."""
    spec = GraphSpec(radius=P.radius, max_neighbors=P.max_neighbors)
    graphs = datasets.load_thermal(P.dataset, spec=spec, workers=P.workers).graphs.first(P.thermal_limit)
    result = fit_regressor(
        _model(P), graphs, THERMAL_TARGET, _config(P, P.epochs), run.runs("thermal", P.dataset), resume=P.resume
    )
    return report(run, result, THERMAL_TARGET, "thermal", published.CGCNN_THERMAL)


def mp_check(P: TrainParams, run: Run) -> pd.DataFrame | None:
    """The same model on an MP target, beside the CGCNN paper's formation-energy MAE (None: skipped)."""
    if P.mp_dataset is None:
        return None
    spec = GraphSpec(radius=P.radius, max_neighbors=P.max_neighbors)
    mp = datasets.load_mp(P.mp_dataset, P.mp_limit, spec, P.workers)
    result = fit_regressor(
        _model(P),
        mp,
        P.mp_target,
        _config(P, P.mp_epochs),
        run.runs("mp", P.mp_dataset, P.mp_target),
        resume=P.resume,
        formula_column="formula",
    )
    paper = published.CGCNN_MP_FORMATION_ENERGY if P.mp_target == "formation_energy_per_atom" else {}
    return report(run, result, P.mp_target, "mp", paper)
