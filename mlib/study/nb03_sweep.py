"""03_sweep: the paper's CGCNN grid on Optuna (exhaustive, or TPE with pruning), its best configurations and
cost; the final model (the sweep's best against the paper's best over several splits); and what limits it
(test error against the number of training crystals, and the spread of labels of one compound).

The study lives in an Optuna RDB storage: by default a SQLite file in the run store
(``<store>/03_sweep/<study>.db``), so a rerun completes the same study to ``n_trials`` finished
trials instead of starting over, and more workers can join it (``python -m mlib.sweep``). The study's
name carries a digest of what its trials depend on (crystals and targets, graphs, search space, epochs,
seed, sampler, pruner, atom features, training choices, model code), so a study on other data or code is
a new study, never mixed with the old one. Final and learning-curve runs are runs of the store
(``<store>/03_sweep/final/...``, ``<store>/03_sweep/curve/...``); the paper's configuration reuses
02_train's finished runs when their keys match.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
from optuna.trial import TrialState

from mlib import catalogue, datasets, plots, published, store_paths, sweep
from mlib.catalogue import THERMAL_TARGET
from mlib.data.thermal import duplicate_spread, records_frame
from mlib.graphs.featurize import GraphSet
from mlib.graphs.neighbors import GraphSpec
from mlib.outputs import Run, mean_std
from mlib.parallel import run_jobs
from mlib.params import SweepParams, TrainConfig
from mlib.training import FitJob, fit_jobs, split_indices

NOTEBOOK = store_paths.SWEEP


def inputs(P: SweepParams, graph_set: GraphSet) -> dict:
    """What the study's trials depend on (recorded in the study, digested into its name)."""
    return sweep.study_inputs(
        graph_set.with_finite(THERMAL_TARGET), P.space(), P.epochs, P.seed, P.sampler, P.pruner, P.atom_features
    )


def study_name(P: SweepParams, recorded: dict) -> str:
    """``study_name`` with a digest of everything the trials depend on (``recorded``, from :func:`inputs`: other
    data or code, another study)."""
    return f"{P.study_name}-{sweep.inputs_digest(recorded)}"


def storage_url(P: SweepParams, name: str) -> str:
    """``storage``, or a SQLite file of the study in the run store."""
    if P.storage:
        return P.storage
    path = store_paths.sweep_database(P.store_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


def graphs(P: SweepParams) -> tuple[GraphSet, str]:
    """The thermal graphs the sweep trains on, and the caption fragment naming them."""
    spec = GraphSpec(radius=P.radius, max_neighbors=P.max_neighbors, tie_order=P.tie_order)
    graph_set = datasets.load_thermal(P.dataset, spec=spec, workers=P.workers).graphs.first(P.thermal_limit)
    return graph_set, graph_set.label


def search(P: SweepParams, run: Run, graph_set: GraphSet, where: str) -> pd.DataFrame:
    """Run (or complete) the study; tables of every trial, the top 10 and the best beside the paper's."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # trials, failed ones too, are reported by the tables
    space = P.space()
    recorded = inputs(P, graph_set)
    name = study_name(P, recorded)
    study = sweep.make_study(name, storage_url(P, name), space, recorded, P.sampler, P.pruner, P.epochs, P.seed)
    print(
        f"study {name}: {space.size()} configurations; {len(study.trials)} trials already in it "
        f"(more workers: python -m mlib.sweep --study {name} ...)",
        flush=True,
    )
    done = len([t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)])
    left = max(P.n_trials - done, 0) if P.n_trials is not None else None
    shares = (
        [None] * P.workers if left is None else [left // P.workers + (k < left % P.workers) for k in range(P.workers)]
    )
    timeout = None
    if P.timeout_min is not None:
        spent = time_spent(study, P.epochs)
        timeout = P.timeout_min * 60 - spent
        print(f"time budget: {spent / 60:.0f} of {P.timeout_min:g} min spent by earlier runs of this study", flush=True)
    if timeout is None or timeout > 0:
        workers = [
            SearchWorker(name, storage_url(P, name), recorded, P.seed + k, share, timeout)
            for k, share in enumerate(shares)
            if share != 0
        ]
        shared = (P, graph_set.graphs, graph_set.target(THERMAL_TARGET))
        run_jobs(_search_worker, workers, shared, P.workers, "sweep workers")
    trials = sweep.trials_table(study, P.epochs)
    states = trials["state"].value_counts()
    run.save_table(
        trials,
        "trials",
        f"All trials ({P.sampler}, pruner {P.pruner}): {where}",
        markdown=False,
        finding=", ".join(f"{n} {state.lower()}" for state, n in states.items())
        + f" of {len(trials)} trials; a failed trial's note says why.",
    )
    lowest = trials.dropna(subset=["val_mae"]).sort_values("val_mae")
    pruned = lowest.head(10)["state"].eq("PRUNED").sum()
    info = catalogue.target(THERMAL_TARGET)
    run.save_table(
        lowest.head(10),
        "top10",
        f"Top 10 trials by lowest validation MAE (1/K; pruned trials stopped early, the objective is validation R "
        f"of completed trials): {where}",
        finding=f"The lowest validation MAE, {lowest['val_mae'].iloc[0] / info.scale:.3g} {info.axis_unit}, belongs "
        f"to trial {int(lowest['trial'].iloc[0])} ({lowest['state'].iloc[0].lower()}); {pruned} of these 10 were "
        "pruned, i.e. stopped before the last epoch: a pruned trial's MAE is of fewer epochs than a completed one's, "
        "and the search's objective (validation R) is read on completed trials only."
        if len(lowest)
        else "No trial reported a validation MAE.",
    )
    best = pd.DataFrame(
        [
            {"run": "this sweep", **study.best_params, "val_r": study.best_value},
            {"run": "paper", **published.CGCNN_THERMAL_BEST},
        ]
    )
    chosen = {k: study.best_params[k] for k in HYPER} if study.best_trials else {}
    run.save_table(
        best,
        "best_config",
        f"Best configuration, beside the paper's: {where}",
        finding=(
            "The search picks the paper's configuration."
            if chosen == dict(published.CGCNN_THERMAL_BEST)
            else f"The search picks {_label(chosen)} (validation R {study.best_value:.4f}), not the paper's "
            f"{_label(dict(published.CGCNN_THERMAL_BEST))}; selected on validation R of one split, it is tested on "
            "other splits in the final-model table below."
        )
        if chosen
        else "No trial completed.",
    )
    return trials


def time_spent(study: optuna.Study, epochs: int) -> float:
    """Wall seconds during which the study's trials ran, overlaps counted once: complete and pruned trials,
    and failed ones that trained all ``epochs`` (they diverged to an undefined validation R; their time was
    spent on the search as much as any other's).

    A rerun of the notebook searches for what is left of ``timeout_min``, as it completes the study to
    ``n_trials``: trials of an interrupted worker (failed before their last epoch) and the time between
    sittings do not count.
    """
    finished = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and t.user_attrs.get("epochs_run") == epochs)
    ]
    spans = sorted(
        (t.datetime_start, t.datetime_complete) for t in finished if t.datetime_start and t.datetime_complete
    )
    total, end = 0.0, None
    for start, stop in spans:
        if end is None or start >= end:
            total += (stop - start).total_seconds()
            end = stop
        elif stop > end:
            total += (stop - end).total_seconds()
            end = stop
    return total


@dataclass(frozen=True)
class SearchWorker:
    """One worker of the study: its own sampler seed (two workers do not propose the same trials), its
    ``share`` of the trials still to run (the workers together complete the study to ``n_trials``) and the
    ``timeout`` (seconds) left of the study's time budget."""

    study: str
    url: str
    recorded: dict
    sampler_seed: int
    share: int | None
    timeout: float | None


def _search_worker(shared: tuple, job: SearchWorker) -> None:
    P, graphs, y = shared
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # as in the notebook: trials are reported by tables
    space = P.space()
    study = sweep.make_study(job.study, job.url, space, job.recorded, P.sampler, P.pruner, P.epochs, job.sampler_seed)
    sweep.run_worker(study, graphs, y, space, P.epochs, P.seed, P.n_trials, job.timeout, P.atom_features, job.share)


def figures(P: SweepParams, run: Run, trials: pd.DataFrame, where: str) -> pd.DataFrame:
    """Validation R against each hyperparameter, the hidden x lr heat map, and the cost against the full grid."""
    space = P.space()
    info = catalogue.target(THERMAL_TARGET)
    scored = trials.dropna(subset=["val_mae"])
    lowest = {k: scored.groupby(k)["val_mae"].min() / info.scale for k in HYPER}
    widest = max(HYPER, key=lambda k: lowest[k].max() - lowest[k].min()) if len(scored) else None
    finding = (
        f"Of the four hyperparameters, {widest} moves the lowest validation MAE most: "
        + ", ".join(f"{value:g}: {mae:.3g}" for value, mae in lowest[widest].items())
        + f" {info.axis_unit} (the best trial at each value)."
        if widest
        else "No trial reported a validation MAE."
    )
    run.save_figure(
        plots.sweep_scatter(trials, list(space.grid()), info),
        "val_mae_by_param",
        f"Lowest validation MAE of every trial against each hyperparameter, by epochs trained, {where}",
        finding=finding,
    )
    run.save_figure(
        plots.sweep_heatmap(trials, info),
        "heatmap_hidden_lr",
        f"Lowest validation MAE any trial reached by hidden size and learning rate (pruned trials stopped early), "
        f"{where}",
        finding=finding,
    )
    cost = sweep.cost_summary(trials, space, P.epochs)
    ours, grid = cost.iloc[0], cost.iloc[1]
    return run.save_table(
        cost,
        "cost",
        f"CPU-hours of this search vs the exhaustive grid (projected), {where}",
        finding=f"This search trained {int(ours['epochs trained']):,} epochs in {ours['cpu_hours']:.2f} CPU-hours; "
        f"the exhaustive grid of {int(grid['trials'])} configurations would take about {grid['cpu_hours']:.0f} "
        f"(projected from the measured seconds per epoch), {grid['cpu_hours'] / ours['cpu_hours']:.0f} times as long.",
    )


HYPER = ("conv_layers", "batch_size", "hidden", "lr")


def _label(hyper: dict) -> str:
    return ", ".join(f"{k} {hyper[k]:g}" for k in HYPER)


def _job(P: SweepParams, hyper: dict, seed: int, out_dir: Path, **kwargs) -> FitJob:
    """One CGCNN run of ``hyper`` (conv_layers, batch_size, hidden, lr) with the 02_train defaults otherwise."""
    return FitJob(
        "cgcnn",
        {"hidden": hyper["hidden"], "n_conv": hyper["conv_layers"], "atom_features": P.atom_features},
        TrainConfig(epochs=P.epochs, batch_size=hyper["batch_size"], lr=hyper["lr"], seed=seed),
        out_dir,
        **kwargs,
    )


def _paper_run(P: SweepParams, seed: int) -> list[Path]:
    """02_train's run of the paper's configuration on the split of ``seed`` (reused when its key matches)."""
    return [store_paths.thermal_model_file(P.store_dir, P.dataset, seed).parent]


def final(P: SweepParams, run: Run, trials: pd.DataFrame, graph_set: GraphSet, where: str) -> pd.DataFrame:
    """The sweep's best configuration (by validation R) and the paper's best, each over ``final_seeds`` splits:
    test R, MAE and RMSE as mean ± std beside the paper's 0.9572."""
    info = catalogue.target(THERMAL_TARGET)
    finished = trials[trials["state"] == "COMPLETE"].sort_values("val_r", ascending=False)
    paper = dict(published.CGCNN_THERMAL_BEST)
    configs = {"paper's best": paper}
    if len(finished):
        best = {k: finished.iloc[0][k] for k in HYPER}
        best = {k: int(v) if k != "lr" else float(v) for k, v in best.items()}
        if best != paper:
            configs = {"this sweep's best": best, **configs}
    jobs = [
        _job(
            P,
            hyper,
            seed,
            store_paths.sweep_final_run(P.store_dir, _label(hyper).replace(", ", "_").replace(" ", ""), seed),
            reuse=_paper_run(P, seed) if hyper == paper else None,
        )
        for hyper in configs.values()
        for seed in P.final_seeds
    ]
    done = iter(fit_jobs(graph_set, THERMAL_TARGET, jobs, P.workers, "final model"))
    rows, per_split = [], []
    for name, hyper in configs.items():
        table = pd.DataFrame([{"seed": seed, **next(done)["metrics"]} for seed in P.final_seeds])
        table["diverged"] = ~(table["r2"] > 0)  # no better than predicting the mean (NaN R: constant predictions)
        per_split += [{"configuration": name, **_labelled(hyper), **row} for row in table.to_dict("records")]
        rows.append(
            {"configuration": name, **_labelled(hyper), **split_summary(table, info), "dataset": graph_set.label}
            | {"epochs": P.epochs}
        )
    rows.append({"configuration": f"paper ({published.CGCNN_PAPER})", **paper, **published.CGCNN_THERMAL})
    summary = pd.DataFrame(rows)
    caption = (
        f"Final model, test metrics over {len(P.final_seeds)} splits 6:2:2 ({info.display}, MAE and RMSE in "
        f"{info.axis_unit}); a split where the model diverged (test R2 <= 0: no better than the mean) is counted "
        f"apart and left out of the mean ± std, which describe the converged splits only: {where}"
    )
    run.save_table(summary, "final", caption, finding=final_finding(summary))
    per_split = pd.DataFrame(per_split)
    run.save_table(
        per_split,
        "final_splits",
        f"Final model, test metrics per split (1/K): {where}",
        finding="; ".join(
            f"{name}: " + ", ".join(f"seed {int(r['seed'])} R {r['pearson_r']:.3f}" for _, r in group.iterrows())
            for name, group in per_split.groupby("configuration", sort=False)
        )
        + " (R2 <= 0: diverged).",
    )
    return summary


def final_finding(summary: pd.DataFrame) -> str:
    """What the final-model table shows: each configuration's converged and diverged splits and its test R."""
    ours = summary[summary["splits"].notna()].astype({"splits": int, "diverged": int})
    parts = [
        f"{r['configuration']} ({r['conv_layers']}, {r['batch_size']}, {r['hidden']}, {r['lr']:g}): "
        + (f"test R {r['pearson_r']} on {r['splits'] - r['diverged']} converged splits" if r["pearson_r"] else "")
        + (f", diverged on {r['diverged']} of {r['splits']}" if r["diverged"] else f" (all {r['splits']})")
        for _, r in ours.iterrows()
    ]
    return "; ".join(parts) + "."


def split_summary(table: pd.DataFrame, info: catalogue.Target) -> dict[str, object]:
    """Mean ± std over the converged splits of one configuration, and how many diverged (a bimodal outcome is
    reported as two counts, never as one mean over both modes)."""
    converged = table[~table["diverged"]]
    out: dict[str, object] = {
        "splits": len(table),
        "diverged": int(table["diverged"].sum()),
        "pearson_r": mean_std(converged["pearson_r"]) if len(converged) else "",
        f"MAE ({info.axis_unit})": mean_std(converged["mae"] / info.scale) if len(converged) else "",
        f"RMSE ({info.axis_unit})": mean_std(converged["rmse"] / info.scale) if len(converged) else "",
        "r2": mean_std(converged["r2"]) if len(converged) else "",
    }
    return out


def _labelled(hyper: dict) -> dict:
    return {k: hyper[k] for k in HYPER}


def limits(P: SweepParams, run: Run, graph_set: GraphSet, where: str) -> pd.DataFrame | None:
    """What limits the test error: the paper's configuration trained on the first N crystals of the training
    split of ``seed`` (validation and test sets fixed), beside the spread of labels of one compound."""
    if not P.curve_sizes:
        return None
    info = catalogue.target(THERMAL_TARGET)
    data = graph_set.with_finite(THERMAL_TARGET)
    split = split_indices(len(data), P.seed)
    paper = dict(published.CGCNN_THERMAL_BEST)
    sizes = [len(split["train"]) if size is None else min(size, len(split["train"])) for size in P.curve_sizes]
    jobs = [
        _job(
            P,
            paper,
            P.seed,
            store_paths.sweep_curve_run(P.store_dir, n),
            split={**split, "train": split["train"][:n]},
            reuse=_paper_run(P, P.seed) if n == len(split["train"]) else None,
        )
        for n in sizes
    ]
    done = fit_jobs(data, THERMAL_TARGET, jobs, P.workers, "learning curve")
    curve = pd.DataFrame([{"train crystals": n, **r["metrics"]} for n, r in zip(sizes, done)])
    records, _ = datasets.agl_records()
    spread = duplicate_spread(records_frame(records))
    floor = pd.DataFrame(
        [
            {
                "AGL entries": spread["entries"],
                "compounds with several entries (space group, formula)": spread["groups with several entries"],
                "their entries": spread["their entries"],
                f"mean |label - compound mean| ({info.axis_unit})": spread["mad"] / info.scale,
                f"mean |difference| of two entries ({info.axis_unit})": spread["pair"] / info.scale,
            }
        ]
    )
    label = f"{data.label}, split seed {P.seed} (test {len(split['test']):,})"
    first, last = curve.iloc[0], curve.iloc[-1]
    run.save_table(
        curve,
        "learning_curve",
        f"Test metrics against training crystals, paper's configuration: {label}",
        finding=f"Test R rises from {first['pearson_r']:.3f} ({int(first['train crystals']):,} training crystals) to "
        f"{last['pearson_r']:.3f} ({int(last['train crystals']):,}); the figure below sets the MAE beside the label "
        "spread of one compound.",
    )
    run.save_table(
        floor,
        "label_spread",
        "Labels of one compound (AFLOW AGL entries sharing space group and formula)",
        finding=f"{spread['groups with several entries']:,} compounds have several AGL entries "
        f"({spread['their entries']:,} entries); two entries of one compound differ by "
        f"{spread['pair'] / info.scale:.3g} {info.axis_unit} on average.",
    )
    run.save_figure(
        plots.error_vs_size(curve, info, spread["mad"]),
        "learning_curve",
        f"Test MAE against training crystals (paper's configuration), with the label spread of one compound: {label}",
        finding=f"Test MAE falls from {first['mae'] / info.scale:.3g} with {int(first['train crystals']):,} training "
        f"crystals to {last['mae'] / info.scale:.3g} {info.axis_unit} with {int(last['train crystals']):,}; entries "
        f"of one compound differ from their mean by {spread['mad'] / info.scale:.3g} on average, a floor no model "
        "reaches on them.",
    )
    return curve
