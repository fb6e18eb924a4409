"""02_train: CGCNN on thermal expansion (the paper's Figure 3) over five splits, the training choices that
differ from the reference implementation measured, a seed ensemble with calibrated spread, and the MP check.

Every model is a run of the store, ``<store>/02_train/thermal/<dataset>/<setting>/seed<k>/`` (``setting``:
``reference`` for the study's defaults, else the changed choice, e.g. ``lr_schedule=constant``), the
ensemble's members on the split of seed ``s`` under ``.../reference/ensemble/split<s>/seed<k>/`` (member ``s`` is the
split's own run, ``.../reference/seed<s>/``) with its manifest ``ensemble.json``, and
``<store>/02_train/mp/<dataset>/<target>/seed<k>/``. An interrupted run resumes from its last checkpoint; a
finished one is read back when its key matches.
"""

from __future__ import annotations

import dataclasses
import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from mlib import catalogue, datasets, domain, plots, predict, published, store, store_paths
from mlib.catalogue import THERMAL_TARGET
from mlib.data.textbook import TEXTBOOK
from mlib.data.thermal import structure_matches
from mlib.graphs.featurize import GraphSet
from mlib.graphs.neighbors import GraphSpec
from mlib.models.registry import build_model, graph_spec
from mlib.outputs import (
    FALSE_DISCOVERY_RATE,
    Results,
    Run,
    benjamini_hochberg,
    count_verdicts,
    mean_std,
    paired_p,
    verdicts,
    with_verdicts,
)
from mlib.parallel import run_jobs
from mlib.params import TrainConfig, TrainParams
from mlib.progress import track
from mlib.training import FitResult, fit_regressor, regression_metrics, split_indices, split_of_ids

NOTEBOOK = store_paths.TRAIN
SPLITS = ("train", "val", "test")
LARGEST = 3  # test errors per split shown as what decides R


def _config(P: TrainParams, epochs: int, seed: int) -> TrainConfig:
    return TrainConfig(
        epochs=epochs,
        batch_size=P.batch_size,
        lr=P.lr,
        weight_decay=P.weight_decay,
        seed=seed,
        lr_schedule=P.lr_schedule,
        best_by=P.best_by,
    )


def _spec(P: TrainParams) -> GraphSpec:
    return GraphSpec(radius=P.radius, max_neighbors=P.max_neighbors, tie_order=P.tie_order)


def _model(P: TrainParams):
    return lambda: build_model(
        "cgcnn", hidden=P.hidden, n_conv=P.conv_layers, head_hidden=P.head_hidden, atom_features=P.atom_features
    )


@lru_cache(maxsize=4)
def _thermal_set(
    dataset: str, spec: GraphSpec, workers: int, limit: int | None
) -> tuple[datasets.ThermalData, GraphSet]:
    """The thermal data set and the graphs the runs train on (its first ``limit``, finite targets)."""
    thermal = datasets.load_thermal(dataset, spec=spec, workers=workers)
    return thermal, thermal.graphs.first(limit).with_finite(THERMAL_TARGET)


def _fit(P: TrainParams, run: Run, setting: str, seed: int, split_seed: int | None = None) -> FitResult:
    """One thermal run: ``seed`` draws the initial weights and batches, ``split_seed`` (default ``seed``) the split."""
    _, graphs = _thermal_set(P.dataset, _spec(P), P.workers, P.thermal_limit)
    if split_seed is None or split_seed == seed:  # the split of the run's own seed
        folder, split = store_paths.thermal_run(P.store_dir, P.dataset, setting, seed), None
    else:
        folder, split = (
            store_paths.thermal_run(P.store_dir, P.dataset, setting, seed, split=split_seed),
            split_indices(len(graphs), split_seed),
        )
    return fit_regressor(
        _model(P),
        graphs,
        THERMAL_TARGET,
        _config(P, P.epochs, seed),
        folder,
        resume=P.resume,
        split=split,
        show=False,
    )


def _with(P: TrainParams, change: str) -> TrainParams:
    """``P`` with one training choice changed (``name=value``)."""
    name, value = change.split("=", 1)
    return dataclasses.replace(P, **{name: value}, compare=[])


def _split_row(result: FitResult, seed: int, best_by: str) -> dict[str, object]:
    """One split's test metrics (the run's own best epoch), sizes and the other criterion's test MAE."""
    sizes = result.predictions["split"].value_counts()
    other = next(c for c in catalogue.BEST_BY if c != best_by)
    return {
        "seed": seed,
        "crystals": len(result.data),
        "train": int(sizes.get("train", 0)),
        "val": int(sizes.get("val", 0)),
        "test": int(sizes.get("test", 0)),
        **{k: result.metrics[k] for k in ("pearson_r", "mae", "rmse", "r2")},
        "best_epoch": result.by_criterion[best_by]["epoch"],
        f"mae (best by {other})": result.by_criterion[other]["mae"],
        f"pearson_r (best by {other})": result.by_criterion[other]["pearson_r"],
        "minutes": result.seconds / 60,
    }


def thermal(P: TrainParams, run: Run) -> pd.DataFrame:
    """CGCNN at the notebook's setting over ``seeds`` (each its own 6:2:2 split), beside the paper's test R.

    Writes the per-split table, the mean ± std summary with the paper's 0.9572 beside it, and the
    predictions, learning curves and parity plot of the first seed's split.
    """
    info = catalogue.target(THERMAL_TARGET)
    results = {
        seed: _fit(P, run, store_paths.REFERENCE, seed) for seed in track(P.seeds, len(P.seeds), "splits", unit="split")
    }
    first = results[P.seeds[0]]
    where = f"{first.data.label}, {len(P.seeds)} splits 6:2:2"
    splits = pd.DataFrame([_split_row(r, seed, P.best_by) for seed, r in results.items()])
    worst = splits.loc[splits["pearson_r"].idxmin()]
    other = next(c for c in catalogue.BEST_BY if c != P.best_by)
    run.save_table(
        splits,
        "thermal_splits",
        f"CGCNN test metrics per split, {info.display} ({info.unit}): {first.data.label}",
        finding=f"Test R runs from {worst['pearson_r']:.4f} (split seed {int(worst['seed'])}) to "
        f"{splits['pearson_r'].max():.4f} over {len(splits)} splits of the same crystals: which crystals land in the "
        f"test set moves R by {splits['pearson_r'].max() - worst['pearson_r']:.3f}. Keeping the epoch of lowest "
        f"validation {other.removeprefix('val_').upper()} instead changes test MAE "
        f"by {(splits[f'mae (best by {other})'] - splits['mae']).mean() / info.scale:+.3g} {info.axis_unit} on average.",
    )
    summary = pd.DataFrame(
        [
            {
                "run": f"this study, mean ± std over {len(P.seeds)} splits",
                "dataset": first.data.label,
                "test crystals": int(splits["test"].iloc[0]),
                **{m: mean_std(splits[m]) for m in ("pearson_r", "mae", "rmse", "r2")},
                "epochs": P.epochs,
            },
            {"run": f"paper ({published.CGCNN_PAPER})", **published.CGCNN_THERMAL},
        ]
    )
    r = splits["pearson_r"]
    paper_r = published.CGCNN_THERMAL["pearson_r"]
    run.save_table(
        summary,
        "thermal_metrics",
        f"CGCNN test metrics, {info.display} ({info.unit}): {where}",
        finding=f"Test Pearson R {r.mean():.4f} ± {r.std(ddof=1) if len(r) > 1 else 0:.3f} over {len(r)} splits "
        f"(from {r.min():.3f} to {r.max():.3f}) against the paper's {paper_r} on one split: "
        + (
            "the paper's value lies within the spread of splits."
            if r.min() <= paper_r <= r.max()
            else f"the paper's value lies {'above' if paper_r > r.max() else 'below'} every split of this study."
        ),
    )
    report(run, first, THERMAL_TARGET, "thermal", published.CGCNN_THERMAL, f"split seed {P.seeds[0]}")
    return summary


def report(run: Run, result: FitResult, target: str, name: str, paper: dict, which: str = "") -> None:
    """Predictions, learning curves and a parity plot of one run (``which`` names it in captions)."""
    test = result.predictions[result.predictions["split"] == "test"]
    where = f"{result.data.label} (test {len(test):,}{', ' + which if which else ''})"
    info = catalogue.target(target)
    parts = result.predictions["split"].value_counts()
    run.save_table(
        result.predictions,
        f"{name}_predictions",
        f"Predictions, {info.display} ({info.unit}): {where}",
        markdown=False,
        finding=f"Every crystal's label and prediction ({parts.get('train', 0):,} train, {parts.get('val', 0):,} "
        f"validation, {parts.get('test', 0):,} test); the parity plot below shows the test rows.",
    )
    run.save_table(
        result.history,
        f"{name}_history",
        f"Learning curves, {info.display}: {where}",
        markdown=False,
        finding=f"{len(result.history)} epochs, one row each; the figure below plots them.",
    )
    r, paper_r = result.metrics["pearson_r"], paper.get("pearson_r")
    beside = f" (paper: {paper_r:.4f})" if paper_r is not None else ""
    fig = plots.parity(
        test["true"].to_numpy(), test["pred"].to_numpy(), info, f"CGCNN, {where}\ntest R = {r:.4f}{beside}"
    )
    run.save_figure(
        fig, f"{name}_parity", f"Test parity plot, {info.display}, {where}", finding=parity_finding(test, r, info)
    )
    history = result.history
    best = history.loc[history["val_mae"].idxmin()]
    run.save_figure(
        plots.learning_curves(history, f"CGCNN, {where}"),
        f"{name}_learning_curves",
        f"Train and validation MSE per epoch, {info.display}, {where}",
        finding=f"Lowest validation MAE at epoch {int(best['epoch'])} of {len(history)} "
        f"({best['val_mae'] / info.scale:.3g} {info.axis_unit}); train MSE then {best['train_mse']:.3g} against "
        f"validation {best['val_mse']:.3g} (standardised units).",
    )


def parity_finding(test: pd.DataFrame, r: float, info: catalogue.Target) -> str:
    """What a parity plot shows: R and MAE over the test crystals, and the single largest error, which weighs on R."""
    error = (test["pred"] - test["true"]).abs()
    worst = test.loc[error.idxmax()]
    others = test.drop(index=error.idxmax())
    r_without = float(np.corrcoef(others["true"], others["pred"])[0, 1]) if len(others) > 2 else float("nan")
    return (
        f"Test R {r:.4f} and MAE {error.mean() / info.scale:.3g} {info.axis_unit} over {len(test):,} crystals; the "
        f"largest error is {worst.get('formula', worst['id'])} (predicted {worst['pred'] / info.scale:.3g}, label "
        f"{worst['true'] / info.scale:.3g}); without it R is {r_without:.4f}."
    )


def choices(P: TrainParams, run: Run) -> pd.DataFrame | None:
    """Each choice of ``compare`` against the study's defaults, paired on the same splits (``compare_seeds``);
    the best-epoch criterion from the same runs (it does not change training). None when nothing is compared."""
    if not P.compare:
        return None
    info = catalogue.target(THERMAL_TARGET)
    base = {seed: _fit(P, run, store_paths.REFERENCE, seed) for seed in P.compare_seeds}
    rows, points = [], []

    def add(change: str, pairs: list[tuple[int, dict, dict]]) -> None:
        d_mae = np.array([(b["mae"] - a["mae"]) / info.scale for _, a, b in pairs])
        d_r = np.array([b["pearson_r"] - a["pearson_r"] for _, a, b in pairs])
        after, before = [b["mae"] for _, _, b in pairs], [a["mae"] for _, a, _ in pairs]
        p = paired_p(after, before, least=2)
        rows.append(
            {
                "change": change,
                "splits": len(pairs),
                "pearson_r (defaults)": mean_std(a["pearson_r"] for _, a, _ in pairs),
                "pearson_r (changed)": mean_std(b["pearson_r"] for _, _, b in pairs),
                f"mae (defaults, {info.axis_unit})": mean_std(a["mae"] / info.scale for _, a, _ in pairs),
                f"mae (changed, {info.axis_unit})": mean_std(b["mae"] / info.scale for _, _, b in pairs),
                "delta pearson_r": mean_std(d_r),
                f"delta mae ({info.axis_unit})": mean_std(d_mae),
                "paired t-test p (mae)": float(p),
            }
        )
        points.extend(
            {"change": change, "seed": s, "delta_mae": m, "delta_r": r} for (s, _, _), m, r in zip(pairs, d_mae, d_r)
        )

    other = next(c for c in catalogue.BEST_BY if c != P.best_by)
    add(f"best_by={other}", [(s, r.by_criterion[P.best_by], r.by_criterion[other]) for s, r in base.items()])
    for change in track(P.compare, len(P.compare), "choices", unit="choice"):
        changed = _with(P, change)
        add(change, [(s, base[s].metrics, _fit(changed, run, change, s).metrics) for s in P.compare_seeds])
    table = pd.DataFrame(rows)
    table["q (Benjamini-Hochberg)"] = benjamini_hochberg(table["paired t-test p (mae)"])
    table["verdict"] = verdicts(
        [-float(d.split(" ± ")[0]) for d in table[f"delta mae ({info.axis_unit})"]],
        table["q (Benjamini-Hochberg)"],
        "lower MAE than the defaults",
        "higher MAE than the defaults",
    )
    where = f"{base[P.compare_seeds[0]].data.label}, test sets of split seeds {P.compare_seeds}"
    finding = (
        f"{len(table)} choices, each paired with the defaults on {len(P.compare_seeds)} splits, read together with "
        f"Benjamini-Hochberg at {FALSE_DISCOVERY_RATE:g}: "
        + count_verdicts(table, "lower MAE than the defaults", "higher MAE than the defaults")
        + ". With this few splits only a large, consistent change can show; the defaults stay."
    )
    run.save_table(
        table,
        "training_choices",
        f"Training choices against the study's defaults (the reference implementation's), paired by split: {where}",
        finding=finding,
    )
    run.save_figure(
        plots.paired_differences(pd.DataFrame(points), info),
        "training_choices",
        f"Change of test MAE when one training choice differs from the defaults, per split: {where}",
        finding=finding,
    )
    return table


@dataclasses.dataclass(frozen=True)
class ArchitectureJob:
    """One run of another architecture on the split (by crystal id) of CGCNN's run with the same seed."""

    model: str
    lr: float
    seed: int
    split_ids: dict[str, list[str]]  # train / val / test ids of CGCNN's run of this seed
    config: TrainConfig
    folder: Path


def _architecture_run(sets: dict[str, GraphSet], job: ArchitectureJob) -> dict[str, object]:
    """Train (or read back) one architecture run; its validation MAE, test predictions and seconds."""
    graph_set = sets[job.model]
    split = split_of_ids(graph_set, job.split_ids)
    result = fit_regressor(
        lambda: build_model(job.model),
        graph_set,
        THERMAL_TARGET,
        dataclasses.replace(job.config, lr=job.lr, seed=job.seed),
        job.folder,
        split=split,
        show=False,
    )
    best = result.history.loc[result.history[job.config.best_by].idxmin()]
    return {
        "model": job.model,
        "lr": job.lr,
        "seed": job.seed,
        "val_mae": float(best["val_mae"]),
        "epochs": len(result.history),
        "seconds": result.seconds,
        "missing": sum(len(ids) for ids in job.split_ids.values()) - sum(len(v) for v in split.values()),
        "predictions": result.predictions[result.predictions["split"] == "test"][["id", "true", "pred"]],
    }


def _architecture_sets(P: TrainParams) -> dict[str, GraphSet]:
    """The thermal graphs each architecture reads (matgl's own graphs for MEGNet and M3GNet)."""
    sets = {}
    for model in P.architectures:
        spec = graph_spec(model)
        spec = _spec(P) if spec.kind == _spec(P).kind and spec.radius == P.radius else spec
        sets[model] = _thermal_set(P.dataset, spec, P.workers, P.thermal_limit)[1]
    return sets


def architectures(P: TrainParams, run: Run) -> pd.DataFrame | None:
    """The other architectures beside CGCNN on the same splits: each model's learning rate chosen among
    ``architecture_lrs`` on the validation set of the split of ``seed``, then trained on each of its splits; all
    scored on the test crystals every model of a split predicts, paired with CGCNN by split (BH over models)."""
    if not P.architectures:
        return None
    info = catalogue.target(THERMAL_TARGET)
    cgcnn = {s: _fit(P, run, store_paths.REFERENCE, s) for s in P.seeds}
    ids = {
        s: {part: r.predictions.loc[r.predictions["split"] == part, "id"].astype(str).tolist() for part in SPLITS}
        for s, r in cgcnn.items()
    }
    sets = _architecture_sets(P)
    config = dataclasses.replace(_config(P, P.epochs, P.seed), patience=P.architecture_patience)

    def job(model: str, lr: float, seed: int) -> ArchitectureJob:
        folder = store_paths.thermal_architecture_run(P.store_dir, P.dataset, model, lr, seed)
        return ArchitectureJob(model, lr, seed, ids[seed], config, folder)

    tried = run_jobs(
        _architecture_run,
        [job(m, lr, P.seed) for m in P.architectures for lr in P.architecture_lrs],
        sets,
        P.workers,
        desc="learning rates",
    )
    choice = pd.DataFrame([{k: v for k, v in t.items() if k != "predictions"} for t in tried])
    chosen = {m: float(part.loc[part["val_mae"].idxmin(), "lr"]) for m, part in choice.groupby("model", sort=False)}
    choice["chosen"] = [chosen[m] == lr for m, lr in zip(choice["model"], choice["lr"])]
    rest = [job(m, chosen[m], s) for m in P.architectures for s in P.splits_of(m) if s != P.seed]
    done = [t for t in tried if t["lr"] == chosen[t["model"]]] + run_jobs(
        _architecture_run, rest, sets, P.workers, desc="architectures"
    )
    run.save_table(
        choice.drop(columns=["seed"])
        .assign(
            model=lambda f: f["model"].map(catalogue.model_display),
            val_mae=lambda f: f["val_mae"] / info.scale,
        )
        .rename(columns={"val_mae": f"validation MAE ({info.axis_unit})"}),
        "architecture_lr",
        f"Learning rate of each architecture, chosen on the validation set of split seed {P.seed} "
        f"({P.epochs} epochs at most, early stopping after {P.architecture_patience}): {cgcnn[P.seed].data.label}",
        finding="Chosen: "
        + ", ".join(f"{catalogue.model_display(m)} {lr:g}" for m, lr in chosen.items())
        + f" (CGCNN keeps the paper's {P.lr:g}); the test sets are not read."
        + (
            f" Crystals of CGCNN's split without a graph for a model: {int(choice['missing'].max())} at most."
            if choice["missing"].any()
            else " Every crystal of CGCNN's split has a graph for every model."
        ),
    )
    return _architecture_verdict(P, run, cgcnn, done, info)


def _architecture_verdict(
    P: TrainParams, run: Run, cgcnn: dict[int, FitResult], done: list[dict], info: catalogue.Target
) -> pd.DataFrame:
    """Each architecture against CGCNN on the test crystals both predict, paired by split."""
    tests = {id(e): set(e["predictions"]["id"]) for e in done}
    shared_ids = {  # per split, the test crystals CGCNN and every architecture trained on that split predict
        s: set.intersection(*(tests[id(e)] for e in done if e["seed"] == s)) for s in {e["seed"] for e in done}
    }
    rows = []
    for entry in done:
        base = cgcnn[entry["seed"]].predictions.set_index("id")
        test = entry["predictions"].set_index("id")
        shared = sorted(shared_ids[entry["seed"]] & set(base.index[base["split"] == "test"]))
        ours, theirs = (
            regression_metrics(test.loc[shared, "true"].to_numpy(), test.loc[shared, "pred"].to_numpy()),
            regression_metrics(base.loc[shared, "true"].to_numpy(), base.loc[shared, "pred"].to_numpy()),
        )
        rows.append(
            {"model": entry["model"], "split seed": entry["seed"], "test": len(shared), "lr": entry["lr"]}
            | {"epochs": entry["epochs"], "minutes": entry["seconds"] / 60}
            | {"pearson_r": ours["pearson_r"], "mae": ours["mae"] / info.scale}
            | {"CGCNN pearson_r": theirs["pearson_r"], "CGCNN mae": theirs["mae"] / info.scale}
        )
    order = {m: k for k, m in enumerate(P.architectures)}
    splits = pd.DataFrame(rows)
    splits = splits.iloc[np.lexsort((splits["split seed"], splits["model"].map(order)))].reset_index(drop=True)
    splits["delta_mae"] = splits["mae"] - splits["CGCNN mae"]
    table = pd.DataFrame(
        [
            {
                "model": catalogue.model_display(model),
                "splits": len(part),
                "test crystals": f"{part['test'].min():,}-{part['test'].max():,}",
                "learning rate": part["lr"].iloc[0],
                "pearson_r": mean_std(part["pearson_r"]),
                f"mae ({info.axis_unit})": mean_std(part["mae"]),
                "CGCNN pearson_r": mean_std(part["CGCNN pearson_r"]),
                f"CGCNN mae ({info.axis_unit})": mean_std(part["CGCNN mae"]),
                f"delta mae ({info.axis_unit})": mean_std(part["delta_mae"]),
                "mean delta": part["delta_mae"].mean(),
                "paired t-test p": paired_p(part["mae"], part["CGCNN mae"], least=2),
            }
            for model, part in splits.groupby("model", sort=False)
        ]
    )
    table = with_verdicts(
        table.assign(gain=-table["mean delta"]), "gain", "lower MAE than CGCNN", "higher MAE than CGCNN"
    ).drop(columns=["gain", "mean delta"])
    where = f"{cgcnn[P.seed].data.label}, 6:2:2 splits of CGCNN's runs, test crystals every model of a split predicts"
    best = splits.groupby("model")["mae"].mean().idxmin()
    finding = (
        f"{len(table)} architectures, each paired with CGCNN by split and read together with Benjamini-Hochberg at "
        f"{FALSE_DISCOVERY_RATE:g}: "
        + count_verdicts(table, "lower MAE than CGCNN", "higher MAE than CGCNN")
        + f". Lowest mean test MAE among them: {catalogue.model_display(best)} "
        f"({splits.loc[splits['model'] == best, 'mae'].mean():.3g} {info.axis_unit}, against CGCNN's "
        f"{splits.loc[splits['model'] == best, 'CGCNN mae'].mean():.3g} on the same splits)."
    )
    run.save_table(
        table,
        "architectures",
        f"Architectures against CGCNN on thermal expansion, paired by split ({info.display}): {where}",
        finding=finding,
    )
    run.save_table(
        splits.drop(columns=["delta_mae"])
        .assign(model=lambda f: f["model"].map(catalogue.model_display))
        .rename(columns={"mae": f"mae ({info.axis_unit})", "CGCNN mae": f"CGCNN mae ({info.axis_unit})"}),
        "architecture_splits",
        f"Test metrics of each architecture and of CGCNN on the same test crystals, per split: {where}",
        finding=f"{len(splits)} runs; {int(splits['test'].sum()):,} paired test predictions in all.",
    )
    points = splits.assign(change=splits["model"].map(catalogue.model_display))
    run.save_figure(
        plots.paired_differences(points, info, against="CGCNN"),
        "architectures",
        f"Test MAE of each architecture minus CGCNN's on the same split and test crystals: {where}",
        finding=finding,
    )
    return table


def best_architecture(train: Results) -> tuple[str, float, list[int], int | None] | None:
    """From 02's finished results: its other architecture of lowest validation MAE (each at its chosen learning
    rate, on split seed ``seed``), that rate, the split seeds it ran on and its early-stopping patience; None when
    02 trained no other architecture."""
    if not train.has("architecture_lr.csv"):
        return None
    rates = train.table("architecture_lr.csv")
    chosen = rates[rates["chosen"]].sort_values(rates.filter(like="validation MAE").columns[0]).iloc[0]
    splits = train.table("architecture_splits.csv")
    seeds = sorted(splits.loc[splits["model"] == chosen["model"], "split seed"].astype(int))
    return catalogue.model_name(chosen["model"]), float(chosen["lr"]), seeds, train.parameters["architecture_patience"]


@dataclasses.dataclass(frozen=True)
class _Ensemble:
    """The seed ensemble on one split: every crystal's label, members' predictions, and the spread's scale."""

    split: int
    label: str
    frame: pd.DataFrame  # id, formula, split (train/val/test), true, one column per member seed
    members: dict[int, FitResult]
    scale: float  # member std x scale holds 68.3 % of the validation errors

    @property
    def member_columns(self) -> list[str]:
        return [f"member_seed{k}" for k in self.members]

    def part(self, name: str) -> pd.DataFrame:
        return self.frame[self.frame["split"] == name]

    def mean(self, frame: pd.DataFrame) -> np.ndarray:
        return frame[self.member_columns].to_numpy().mean(axis=1)

    def z(self, frame: pd.DataFrame) -> np.ndarray:
        """|error| of the mean prediction in units of the members' raw std."""
        return np.abs(frame["true"].to_numpy() - self.mean(frame)) / frame[self.member_columns].to_numpy().std(
            axis=1, ddof=1
        )


def _ensemble(P: TrainParams, run: Run, split: int) -> _Ensemble:
    """The ``ensemble_seeds`` models on the split of seed ``split`` (member ``split`` is that split's own run)."""
    members = {k: _fit(P, run, store_paths.REFERENCE, k, split_seed=split) for k in P.ensemble_seeds}
    first = next(iter(members.values()))
    frame = first.predictions[["id", "formula", "split", "true"]].set_index("id")
    for k, result in members.items():
        frame[f"member_seed{k}"] = result.predictions.set_index("id").loc[frame.index, "pred"]
    made = _Ensemble(split, "", frame.reset_index(), members, 1.0)
    within = stats.norm.cdf(1) - stats.norm.cdf(-1)  # one scaled spread holds 68.3 % of the validation errors
    scale = float(np.quantile(made.z(made.part("val")), within))
    label = f"{first.data.label}, split seed {split} (test {len(made.part('test')):,})"
    return dataclasses.replace(made, label=label, scale=scale)


def _write_manifest(P: TrainParams, made: _Ensemble, info: catalogue.Target) -> None:
    """``ensemble.json`` of a split's ensemble: members' model files, spread scale and test metrics."""
    where = store_paths.ensemble_file(P.store_dir, P.dataset, made.split)
    test = made.part("test")
    manifest = {
        "target": THERMAL_TARGET,
        "unit": info.unit,
        "dataset": made.label,
        "members": [
            Path(os.path.relpath(r.folder / "model.pt", where.parent)).as_posix() for r in made.members.values()
        ],
        "spread_scale": made.scale,
        "test": regression_metrics(test["true"].to_numpy(), made.mean(test)),
    }
    store.write_json(where, manifest)


def ensemble(P: TrainParams, run: Run) -> pd.DataFrame:
    """The study's thermal-expansion predictor: a seed ensemble of ``ensemble_seeds`` on every split of ``seeds``
    (each split's own run reused as a member). Its test metrics per split and over the splits beside single models
    and the paper, the calibration of its spread (scaled on each split's validation set), the largest test errors
    that decide R, and every crystal's prediction on every split (``thermal_predictor_predictions.csv``)."""
    info = catalogue.target(THERMAL_TARGET)
    pairs = [(s, k) for s in P.seeds for k in P.ensemble_seeds]
    for s, k in track(pairs, len(pairs), "ensemble members", unit="model"):
        _fit(P, run, store_paths.REFERENCE, k, split_seed=s)
    made = {s: _ensemble(P, run, s) for s in P.seeds}
    for one in made.values():
        _write_manifest(P, one, info)
    n, data = len(P.ensemble_seeds), next(iter(made.values())).members[P.ensemble_seeds[0]].data.label
    per_split, singles = [], []
    for s, one in made.items():
        test = one.part("test")
        members = pd.DataFrame([regression_metrics(test["true"].to_numpy(), test[c]) for c in one.member_columns])
        singles.append(members)
        whole = regression_metrics(test["true"].to_numpy(), one.mean(test))
        z = one.z(test)
        per_split.append(
            {"split seed": s, "test": len(test)}
            | {f"single {m} (mean ± std of {n})": mean_std(members[m]) for m in ("pearson_r", "mae")}
            | {f"ensemble {m}": whole[m] for m in ("pearson_r", "mae", "rmse", "r2")}
            | {
                "spread scale": one.scale,
                "within 1 scaled spread": float((z <= one.scale).mean()),
                "within 2 scaled spreads": float((z <= 2 * one.scale).mean()),
            }
        )
    splits = pd.DataFrame(per_split)
    every_single = pd.concat(singles, ignore_index=True)
    headline = pd.DataFrame(
        [
            {"predictor": f"ensemble of {n}, mean ± std over {len(made)} splits", "dataset": data}
            | {"test crystals": int(splits["test"].iloc[0])}
            | {m: mean_std(splits[f"ensemble {m}"]) for m in ("pearson_r", "mae", "rmse", "r2")}
            | {"epochs": P.epochs},
            {"predictor": f"single models, mean ± std over {len(every_single)} ({len(made)} splits x {n})"}
            | {"dataset": data, "test crystals": int(splits["test"].iloc[0])}
            | {m: mean_std(every_single[m]) for m in ("pearson_r", "mae", "rmse", "r2")}
            | {"epochs": P.epochs},
            {"predictor": f"paper ({published.CGCNN_PAPER}), one split", **published.CGCNN_THERMAL},
        ]
    )
    r, mae = splits["ensemble pearson_r"], splits["ensemble mae"]
    goal_r, goal_mae = published.THERMAL_GOAL["pearson_r"], published.THERMAL_GOAL["mae"]
    run.save_table(
        headline,
        "thermal_predictor",
        f"The study's thermal-expansion predictor (a seed ensemble of {n} CGCNN per split) against single models "
        f"and the paper, {info.display} ({info.unit}): {data}, {len(made)} splits 6:2:2",
        finding=f"Over {len(made)} splits the ensemble reaches test R {r.mean():.4f} (from {r.min():.4f} to "
        f"{r.max():.4f}) and MAE {mae.mean() / info.scale:.3g} {info.axis_unit}, against "
        f"{every_single['pearson_r'].mean():.4f} and {every_single['mae'].mean() / info.scale:.3g} for single models; "
        f"the goal (R >= {goal_r}, MAE <= {goal_mae / info.scale:.3g} {info.axis_unit}) is "
        + (
            "met."
            if r.mean() >= goal_r and mae.mean() <= goal_mae
            else f"not met ({'R' if r.mean() < goal_r else ''}{' and ' if r.mean() < goal_r and mae.mean() > goal_mae else ''}"
            f"{'MAE' if mae.mean() > goal_mae else ''} short); the table of largest errors shows what decides R."
        ),
    )
    lift = splits["ensemble pearson_r"] - [members["pearson_r"].mean() for members in singles]
    run.save_table(
        splits,
        "ensemble_metrics",
        f"Seed ensemble of {n} against its members on each split, {info.display} ({info.unit}): {data}",
        finding=f"Averaging {n} models lifts test R on {int((lift > 0).sum())} of {len(splits)} splits (by "
        f"{lift.mean():+.4f} on average); the scaled spread holds {splits['within 1 scaled spread'].mean():.0%} of "
        f"test errors within one spread (a Gaussian: 68 %) and {splits['within 2 scaled spreads'].mean():.0%} within "
        "two (95 %), its scale fitted on each split's validation set.",
    )
    _calibration(run, made)
    _largest_errors(run, made, info)
    listing = pd.concat(
        [
            one.frame.assign(
                seed=s, pred=one.mean(one.frame), spread=one.frame[one.member_columns].std(axis=1) * one.scale
            )
            for s, one in made.items()
        ],
        ignore_index=True,
    )
    listing = listing[["seed", "id", "formula", "split", "true", "pred", "spread", *made[P.seeds[0]].member_columns]]
    run.save_table(
        listing,
        "thermal_predictor_predictions",
        f"The predictor's prediction of every crystal on every split ({info.unit}): seed = split seed, split = the "
        f"crystal's part of it, pred = mean of the members (member_seed<k>), spread = their std x the split's scale; "
        f"{data}",
        markdown=False,
        finding=f"{len(listing):,} rows ({len(made)} splits x {len(listing) // len(made):,} crystals); the test rows "
        "of each split give the metrics above.",
    )
    return headline


def _calibration(run: Run, made: dict[int, _Ensemble]) -> None:
    """The ensemble spread against test errors, raw and scaled by each split's validation fit, pooled over splits."""
    z = np.concatenate([one.z(one.part("test")) / one.scale for one in made.values()])
    raw = np.concatenate([one.z(one.part("test")) for one in made.values()])
    where = f"{len(raw):,} test crystals of {len(made)} splits"
    calibration = pd.DataFrame(
        [
            {
                "spread": name,
                "within 1 spread": float((values <= 1).mean()),
                "within 2 spreads": float((values <= 2).mean()),
                "gaussian expectation": "0.683 / 0.954",
            }
            for name, values in (("raw member std", raw), ("std x each split's scale (fit on validation)", z))
        ]
    )
    low, fitted = calibration.iloc[0], calibration.iloc[1]
    finding = (
        f"The members' raw spread is too narrow: {low['within 1 spread']:.0%} of test errors fall within one spread "
        f"(a Gaussian: 68 %); scaled by each split's factor (fitted on its validation set, not the test set) "
        f"{fitted['within 1 spread']:.0%} fall within one and {fitted['within 2 spreads']:.0%} within two (95 %). "
        "mlib.predict reports the scaled spread."
    )
    run.save_table(calibration, "ensemble_calibration", f"Calibration of the ensemble spread: {where}", finding=finding)
    run.save_figure(
        plots.spread_calibration(raw, z),
        "ensemble_calibration",
        f"Fraction of test errors within k ensemble spreads against a Gaussian's: {where}",
        finding=finding,
    )


def _largest_errors(run: Run, made: dict[int, _Ensemble], info: catalogue.Target) -> None:
    """The ``LARGEST`` test errors of the ensemble on each split, which crystals they are, and R without them."""
    rows = []
    for s, one in made.items():
        test = one.part("test")
        test = test.assign(pred=one.mean(test))
        error = (test["pred"] - test["true"]).abs()
        worst = test.loc[error.nlargest(LARGEST).index]
        kept = test.drop(worst.index)
        r_all, r_kept = stats.pearsonr(test["true"], test["pred"])[0], stats.pearsonr(kept["true"], kept["pred"])[0]
        for rank, row in enumerate(worst.itertuples(), 1):
            rows.append(
                {
                    "split seed": s,
                    "rank": rank,
                    "id": row.id,
                    "formula": row.formula,
                    f"label ({info.axis_unit})": row.true / info.scale,
                    f"predicted ({info.axis_unit})": row.pred / info.scale,
                    f"|error| ({info.axis_unit})": abs(row.pred - row.true) / info.scale,
                    "share of test squared error": float(
                        (row.pred - row.true) ** 2 / ((test["pred"] - test["true"]) ** 2).sum()
                    ),
                    "test R": r_all,
                    f"test R without these {LARGEST}": r_kept,
                }
            )
    table = pd.DataFrame(rows)
    by_split = table.groupby("split seed").first()
    share = table.groupby("split seed")["share of test squared error"].sum()
    run.save_table(
        table,
        "largest_errors",
        f"The {LARGEST} largest test errors of the ensemble on each split and R without them, {info.display}: "
        f"{next(iter(made.values())).label.split(', split seed')[0]}",
        finding=f"On each split {LARGEST} of ~{len(next(iter(made.values())).part('test')):,} test crystals carry "
        f"{share.min():.0%} to {share.max():.0%} of the squared error; without them test R moves from "
        f"{by_split['test R'].mean():.4f} to {by_split[f'test R without these {LARGEST}'].mean():.4f} on average. "
        "The largest of each split: " + ", ".join(f"{row.formula} (split {s})" for s, row in by_split.iterrows()) + ".",
    )


def _flag_row(predictor: str, test: pd.DataFrame, error: pd.Series, scale: float) -> dict[str, object]:
    """One predictor's test crystals split by the domain flag: how many, and the MAE of each side."""
    error = error.loc[test["id"]].to_numpy()
    flagged = test["out_of_domain"].to_numpy(dtype=bool)
    rho, p = stats.spearmanr(test["percentile"], error)
    inside, outside = error[~flagged].mean(), error[flagged].mean() if flagged.any() else float("nan")
    return {
        "predictor": predictor,
        "test": len(test),
        "flagged": int(flagged.sum()),
        "share flagged": float(flagged.mean()),
        "MAE flagged": outside / scale,
        "MAE not flagged": inside / scale,
        "flagged / not flagged": outside / inside,
        "Spearman (percentile, |error|)": float(rho),
        "p": float(p),
    }


def _ratio(value: float) -> str:
    """A flagged / not flagged MAE ratio as a finding reads it (no crystal flagged: no ratio)."""
    return f"{value:.2g}x" if np.isfinite(value) else "no test crystal flagged"


def domain_check(P: TrainParams, run: Run) -> pd.DataFrame:
    """Does the domain flag (:mod:`mlib.domain`, fitted on each model's validation crystals) pick out the test
    crystals with the larger errors? Per split of ``seeds`` and for the ensemble (whose members keep their
    ``domain.pt``, which ``mlib.predict`` reads)."""
    info = catalogue.target(THERMAL_TARGET)
    _, graphs = _thermal_set(P.dataset, _spec(P), P.workers, P.thermal_limit)
    rows = []
    for seed in track(P.seeds, len(P.seeds), "domains of the splits", unit="split"):
        result = _fit(P, run, store_paths.REFERENCE, seed)
        _, test = domain.build(result.folder, graphs, keep=False)
        errors = (result.predictions["pred"] - result.predictions["true"]).abs()
        rows.append(
            _flag_row(f"single model, split seed {seed}", test, errors.set_axis(result.predictions["id"]), info.scale)
        )
    members = [_fit(P, run, store_paths.REFERENCE, k, split_seed=P.seed) for k in P.ensemble_seeds]
    tests = [domain.build(m.folder, graphs)[1].set_index("id") for m in members]  # kept beside each member's model
    ids = tests[0].index
    vote = pd.DataFrame(
        {
            "id": ids,
            "percentile": np.median([t.loc[ids, "percentile"] for t in tests], axis=0),
            "out_of_domain": np.sum([t.loc[ids, "out_of_domain"] for t in tests], axis=0) > len(tests) / 2,
        }
    )
    preds = [m.predictions.set_index("id") for m in members]
    mean = np.mean([p.loc[ids, "pred"] for p in preds], axis=0)
    errors = pd.Series(np.abs(mean - preds[0].loc[ids, "true"].to_numpy()), index=ids)
    rows.append(
        _flag_row(
            f"ensemble of {len(members)}, split seed {P.seed} (median percentile, majority flag)",
            vote,
            errors,
            info.scale,
        )
    )
    rows += _held_out_rows(P, graphs, info.scale)
    table = pd.DataFrame(rows)
    singles = table[table["predictor"].str.startswith("single model")]
    held = table[table["predictor"].str.contains("held out")]
    run.save_table(
        table,
        "domain_check",
        f"Test crystals beyond the validation crystals' {domain.QUANTILE:.0%} distance to the training crystals "
        f"(mean over the {domain.K} nearest crystal vectors) against the others: MAE in {info.axis_unit}; "
        f"{graphs.label}, 6:2:2 splits",
        finding=f"The flag marks {singles['share flagged'].mean():.1%} of test crystals on average (the validation "
        f"set's {1 - domain.QUANTILE:.0%} by construction); their MAE is {singles['flagged / not flagged'].min():.2g}x to "
        f"{singles['flagged / not flagged'].max():.2g}x that of the others over {len(singles)} splits "
        f"(ensemble: {_ratio(table.loc[table['predictor'].str.startswith('ensemble'), 'flagged / not flagged'].iloc[0])}), "
        f"and the distance percentile correlates with the absolute error at Spearman "
        f"{singles['Spearman (percentile, |error|)'].min():.2f} to {singles['Spearman (percentile, |error|)'].max():.2f}."
        + (
            f" A chemistry never trained on ({held['predictor'].iloc[0].split(': ')[1]}): "
            f"{held['share flagged'].iloc[0]:.0%} of its crystals are flagged (MAE {held['MAE flagged'].iloc[0]:.3g} "
            f"flagged, {held['MAE not flagged'].iloc[0]:.3g} not), against {held['share flagged'].iloc[1]:.0%} of the "
            "same model's other test crystals."
            if len(held) == 2
            else ""
        ),
    )
    return table


def _held_out_rows(P: TrainParams, graphs: GraphSet, scale: float) -> list[dict[str, object]]:
    """A model trained on the split of ``seed`` without the crystals holding every element of ``held_out``: its
    domain flag on those crystals and on its other test crystals (no rows when ``held_out`` is empty or no crystal
    has those elements)."""
    from pymatgen.core import Composition

    if not P.held_out:
        return []
    wanted = set(P.held_out)
    held = np.array([wanted <= {e.symbol for e in Composition(f).elements} for f in graphs.table["reduced_formula"]])
    if not held.any():
        return []
    base = split_indices(len(graphs), P.seed)
    split = {part: rows[~held[rows]] for part, rows in base.items()}
    split["test"] = np.sort(np.concatenate([split["test"], np.flatnonzero(held)]))
    setting = f"held_out={'-'.join(P.held_out)}"
    result = fit_regressor(
        _model(P),
        graphs,
        THERMAL_TARGET,
        _config(P, P.epochs, P.seed),
        store_paths.thermal_run(P.store_dir, P.dataset, setting, P.seed),
        resume=P.resume,
        split=split,
        show=False,
    )
    _, test = domain.build(result.folder, graphs, keep=False)
    errors = (result.predictions["pred"] - result.predictions["true"]).abs().set_axis(result.predictions["id"])
    is_held = test["id"].isin(set(graphs.table["id"].astype(str)[held]))
    name = f"crystals with {' and '.join(P.held_out)} ({int(held.sum())})"
    return [
        _flag_row(f"held out of training: {name}", test[is_held], errors, scale),
        _flag_row(f"same model, the other test crystals of split seed {P.seed}", test[~is_held], errors, scale),
    ]


def known_compounds(P: TrainParams, run: Run) -> pd.DataFrame:
    """Textbook structures of well-known compounds (CIF files, experimental lattices) predicted by the seed
    ensemble through ``mlib.predict`` as a user would, beside AFLOW's label of the same crystal: the AFLOW entry
    that is its polymorph (StructureMatcher, not formula and space group alone), whether the data set holds that
    entry (the paper's dedup keeps one entry per space group and reduced formula, so another polymorph may
    stand in for it), and its part in the ensemble's split (a training crystal is no test)."""
    info = catalogue.target(THERMAL_TARGET)
    folder = run.path("textbook_cifs")
    folder.mkdir(exist_ok=True)
    for compound in TEXTBOOK:
        store.write_text(folder / f"{compound.formula}.cif", compound.cif())
    predicted = predict.predict(
        [folder / f"{c.formula}.cif" for c in TEXTBOOK], store_paths.ensemble_file(P.store_dir, P.dataset, P.seed)
    )
    thermal, graphs = _thermal_set(P.dataset, _spec(P), P.workers, P.thermal_limit)
    split = json.loads(
        (store_paths.thermal_model_file(P.store_dir, P.dataset, P.seed).parent / "split.json").read_text()
    )
    part = {entry: name for name in ("train", "val", "test") for entry in split[name]}
    rows = [
        {
            "compound": f"{compound.formula} ({compound.name})",
            f"predicted ({info.axis_unit})": row.prediction / info.scale,
            f"spread ({info.axis_unit})": row.spread / info.scale,
            "domain percentile": row.domain_percentile,
            "out of domain": row.out_of_domain,
            **_aflow_match(compound.cif(), thermal.before_dedup, set(graphs.table["id"]), part, info),
        }
        for compound, row in zip(TEXTBOOK, predicted.itertuples())
    ]
    frame = pd.DataFrame(rows)
    matched = frame[frame[f"AFLOW label ({info.axis_unit})"].notna()]
    off = (matched[f"predicted ({info.axis_unit})"] - matched[f"AFLOW label ({info.axis_unit})"]).abs()
    unseen = frame[~frame["note"].str.startswith("in the data set")]["compound"].tolist()
    run.save_table(
        frame,
        "known_compounds",
        f"Seed ensemble on textbook structures of well-known compounds (experimental lattices, CIF files in "
        f"textbook_cifs/), beside the label of the AFLOW entry with the same structure (pymatgen's "
        f"StructureMatcher among {len(thermal.before_dedup):,} AFLOW entries before the dedup), {info.display}: "
        f"{graphs.label}",
        finding=f"{len(matched)} of {len(frame)} compounds have an AFLOW entry of the same structure; the ensemble "
        f"is within {off.median():.3g} {info.axis_unit} of its label (median; at most {off.max():.3g}). Most of "
        "these entries were in training, so this checks the pipeline from a CIF to a prediction, not accuracy; "
        + (f"not seen in training: {', '.join(unseen)}." if unseen else "every one was seen in training.")
        + " Flagged out of domain: "
        + (", ".join(frame.loc[frame["out of domain"].eq(True), "compound"]) or "none")
        + ".",
    )
    return frame


def _aflow_match(cif: str, before: pd.DataFrame, kept: set[str], part: dict[str, str], info) -> dict[str, object]:
    """The AFLOW entry with ``cif``'s structure, its label, and where it stands in the data set and split."""
    matches = structure_matches(cif, before)
    if matches.empty:
        return {"AFLOW entry (same structure)": "none", f"AFLOW label ({info.axis_unit})": float("nan"), "note": ""}
    in_set = matches[matches["id"].isin(kept)]
    entry = (in_set if len(in_set) else matches).iloc[0]
    note = part.get(entry["id"], "") if entry["id"] in kept else "not in the data set"
    if entry["id"] not in kept:
        same_key = before[
            (before["spacegroup"] == entry["spacegroup"]) & (before["reduced_formula"] == entry["reduced_formula"])
        ]
        note += (
            f": the paper's dedup kept {same_key['id'].iloc[0]} (space group {entry['spacegroup']}, "
            f"another structure of {entry['reduced_formula']})"
        )
    else:
        note = f"in the data set, {note} split of the ensemble" if note else "in the data set"
    return {
        "AFLOW entry (same structure)": entry["id"],
        "space group": int(entry["spacegroup"]),
        f"AFLOW label ({info.axis_unit})": entry[THERMAL_TARGET] / info.scale,
        "note": note,
    }


def mp_check(P: TrainParams, run: Run) -> pd.DataFrame | None:
    """The same model on an MP target, beside the CGCNN paper's MAE (None: skipped)."""
    if P.mp_dataset is None:
        return None
    mp = datasets.load_mp(P.mp_dataset, P.mp_limit, _spec(P), P.workers)
    result = fit_regressor(
        _model(P),
        mp,
        P.mp_target,
        _config(P, P.mp_epochs, P.seed),
        store_paths.mp_run(P.store_dir, P.mp_dataset, P.mp_target, P.seed),
        resume=P.resume,
        formula_column="formula",
    )
    info = catalogue.target(P.mp_target)
    paper = (
        {"dataset": published.CGCNN_MP_DATASET, "mae": published.CGCNN_MP_MAE[P.mp_target]}
        if P.mp_target in published.CGCNN_MP_MAE
        else {}
    )
    test = int((result.predictions["split"] == "test").sum())
    metrics = pd.DataFrame(
        [
            {
                "run": "this study",
                "dataset": f"{result.data.label} (test {test:,})",
                **result.metrics,
                "epochs": len(result.history),
            },
            {"run": f"paper ({published.CGCNN_PAPER})", **paper},
        ]
    )
    paper_mae = paper.get("mae")
    run.save_table(
        metrics,
        "mp_metrics",
        f"CGCNN test metrics, {info.display} ({info.unit}): {result.data.label}",
        finding=f"Test MAE {result.metrics['mae']:.3g} {info.unit} after {len(result.history)} epochs"
        + (
            f", {result.metrics['mae'] / paper_mae:.1f} times the paper's {paper_mae} on its own Materials Project "
            "set (trained to convergence there; this is a check that the same model learns a second target, "
            "not a reproduction)."
            if paper_mae
            else "."
        ),
    )
    report(run, result, P.mp_target, "mp", paper)
    return metrics
