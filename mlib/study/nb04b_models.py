"""04b_models: several models trained centrally on several MP targets and seeds, same crystals and splits.

This is the baseline the federated study is priced against: every (model, target, seed) run sees the
same crystals (those every model's graphs could be built for) and, for a given seed, the same 8:1:1
split. Each run is a run of the store, ``<store>/04b_models/<model>/<target>/seed<k>/``, read back when
its key matches, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from mlib import catalogue, datasets, plots, published, store_paths
from mlib.catalogue import MP_SPLIT
from mlib.data.errors import BadEntry
from mlib.data.skips import Skips
from mlib.graphs.featurize import GraphSet
from mlib.models.registry import MODELS, build_model, graph_spec, model_table
from mlib.outputs import FALSE_DISCOVERY_RATE, Run, mean_std, paired_p, with_verdicts
from mlib.parallel import run_jobs
from mlib.params import ModelsParams, TrainConfig
from mlib.training import fit_regressor, split_of_ids

NOTEBOOK = store_paths.MODELS
METRICS = ("mse", "rmse", "mae", "r2")


def common_crystals(sets: dict[str, GraphSet]) -> dict[str, GraphSet]:
    """Each graph set without the crystals another kind of graph could not be built for, in the same order.

    A crystal missing from one kind of graph (for example an atom with no neighbour within a
    shorter cutoff) is dropped from every set and counted as a skip with the reason. Sets built from
    different first-N ranges of one data set keep the crystals beyond the other's range.
    """
    ids = {kind: graph_set.table["id"].astype(str).tolist() for kind, graph_set in sets.items()}
    failed = {kind: {record.entry_id for record in graph_set.skips.records} for kind, graph_set in sets.items()}
    out = {}
    for kind, graph_set in sets.items():
        unusable = set().union(*(failed[other] for other in sets if other != kind))
        rows = [i for i, entry in enumerate(ids[kind]) if entry not in unusable]
        kept, present = graph_set.subset(rows), set(ids[kind])
        kept.skips = Skips(strict=graph_set.skips.strict, records=list(graph_set.skips.records))
        for other, other_set in sets.items():
            for record in other_set.skips.records if other != kind else ():
                if record.entry_id in present:
                    kept.skips.add(
                        BadEntry(record.entry_id, f"no {other} graph: {record.reason}", "graph", f"no {other} graph")
                    )
        out[kind] = kept
    return out


def model_limit(limit: int | None, model_limits: dict[str, int] | None, model: str) -> int | None:
    """The first-N crystals a model trains on: the study's ``limit`` or the model's own, whichever is smaller."""
    own = (model_limits or {}).get(model)
    return min((n for n in (limit, own) if n is not None), default=None)


def load_graph_sets(
    dataset: str,
    limit: int | None,
    models: list[str],
    workers: int = 1,
    hyper: dict[str, dict] | None = None,
    model_limits: dict[str, int] | None = None,
) -> dict[str, GraphSet]:
    """The graphs each model in ``models`` reads (keyed by model), without the crystals another model's graphs
    could not be built for; a model of ``model_limits`` gets the first N only (a labelled subset)."""
    hyper = hyper or {}
    specs = {}
    for model in models:
        build_model(model, **hyper.get(model, {}))  # unknown hyperparameters fail here, before any graph is built
        spec = graph_spec(model, **hyper.get(model, {}))
        if specs.setdefault(spec.kind, spec) != spec:
            raise ValueError(
                f"{model} needs {spec}, another model of the study {specs[spec.kind]}; "
                "give models of one graph kind the same cutoff"
            )
    limits = {m: model_limit(limit, model_limits, m) for m in models}
    kind_limit = {}
    for model in models:  # a kind's graphs cover the largest range any of its models trains on
        kind = MODELS[model].graph_kind
        current = kind_limit.get(kind, 0)
        kind_limit[kind] = None if current is None or limits[model] is None else max(current, limits[model])
    sets = common_crystals(
        {
            kind: datasets.load_mp(dataset, limit=kind_limit[kind], spec=spec, workers=workers)
            for kind, spec in specs.items()
        }
    )
    return {
        m: sets[MODELS[m].graph_kind].first(limits[m])
        if limits[m] != kind_limit[MODELS[m].graph_kind]
        else sets[MODELS[m].graph_kind]
        for m in models
    }


def describe_sets(sets: dict[str, GraphSet]) -> str:
    """The caption fragment naming the crystals: the largest set, and each model trained on a subset."""
    largest = max(sets.values(), key=len)
    subsets = [f"{catalogue.model_display(m)} on {s.label}" for m, s in sets.items() if len(s) < len(largest)]
    return f"{largest.label} (8:1:1 split)" + (f"; {', '.join(subsets)}" if subsets else "")


def train_one(
    model: str,
    hyper: dict,
    graph_set: GraphSet,
    target: str,
    config: TrainConfig,
    store_root: Path,
    split: dict[str, np.ndarray] | None = None,
    group: str = "",
    reuse: tuple[Path, ...] = (),
) -> tuple[dict, pd.DataFrame]:
    """One central run (or the finished run of the store with the same key): a result row and its predictions
    (``split``: row numbers replacing the seeded 8:1:1 split; ``group``: a sub-study's folder; ``reuse``: other
    folders whose finished run with this key is read back)."""
    result = fit_regressor(
        lambda: build_model(model, **hyper),
        graph_set,
        target,
        config,
        store_paths.model_run(store_root, model, target, config.seed, group),
        formula_column="formula",
        fractions=MP_SPLIT,
        show=False,
        split=split,
        reuse=list(reuse),
    )
    test = result.predictions[result.predictions["split"] == "test"]
    row = {
        "model": model,
        "target": target,
        "seed": config.seed,
        "crystals": len(result.data),
        "train": int((result.predictions["split"] == "train").sum()),
        "test": len(test),
        **{m: result.metrics[m] for m in (*METRICS, "pearson_r")},
        "epochs": len(result.history),
        "best_epoch": int(result.history[config.best_by].idxmin()) + 1,
        "seconds": result.seconds,
    }
    return row, result.predictions.assign(model=model, target=target, seed=config.seed)


@dataclass(frozen=True)
class ModelJob:
    """One central run of :func:`train_one` that a worker process makes on the graph set its model reads."""

    model: str
    hyper: dict
    target: str
    config: TrainConfig
    store_root: Path
    split: dict[str, np.ndarray] | None = None
    group: str = ""
    graphs: GraphSet | None = None  # the crystals to train on, when not the model's whole graph set
    reuse: tuple[Path, ...] = ()


def _train_job(sets: dict[str, GraphSet], job: ModelJob) -> tuple[dict, pd.DataFrame]:
    graph_set = job.graphs if job.graphs is not None else sets[job.model]
    return train_one(
        job.model, job.hyper, graph_set, job.target, job.config, job.store_root, job.split, job.group, job.reuse
    )


BESIDE_MATGL_1 = "beside-matgl-1.0.0"  # the store group of the runs that repeat matgl 1.0.0's on its crystals
ALL_CRYSTALS = "all-crystals"  # the store group of the headline runs on every crystal (beyond model_limits)


def stored_crystals(P: ModelsParams, model: str, sets: dict[str, GraphSet], name: str) -> GraphSet:
    """The graph set a stored run named ``name`` (its key's data set) was drawn from: the model's set of this
    study when it has that name, else that range of ``P.dataset`` loaded again (its graphs are cached), so the
    repeat's key is the key the run would have had in the study that made it."""
    if sets[model].name == name:
        return sets[model]
    dataset, limit = GraphSet.first_of(name)
    if dataset != P.dataset:
        raise ValueError(f"a stored matgl 1.0.0 run of {model} was trained on {name!r}, not on {P.dataset!r}")
    return datasets.load_mp(dataset, limit, graph_spec(model, **(P.model_hyper or {}).get(model, {})), P.workers)


def matgl1_jobs(P: ModelsParams, sets: dict[str, GraphSet]) -> tuple[list[ModelJob], list[dict], list[str]]:
    """For each stored matgl 1.0.0 run of MEGNet or M3GNet (``store_paths.MATGL_1``): a run of the installed matgl
    on the same crystals (drawn from the same range of the data set), split, seed, hyperparameters and budget, and
    the matgl 1.0.0 run's record; and the stored runs that cannot be repeated here, each with why."""
    jobs, old, skipped = [], [], []
    loaded: dict[tuple[str, str], GraphSet] = {}
    for model in [m for m in P.models if MODELS[m].graph_kind == "matgl"]:
        for target in P.targets:
            for seed in P.seeds_for(model):
                folder = store_paths.model_run(P.store_dir, model, target, seed, store_paths.MATGL_1)
                if not (folder / "run.json").exists():
                    continue
                saved = json.loads((folder / "run.json").read_text())
                ids = json.loads((folder / "split.json").read_text())
                name = saved["key"]["data"]["dataset"]
                if (model, name) not in loaded:
                    loaded[model, name] = stored_crystals(P, model, sets, name)
                graphs = loaded[model, name].with_finite(target)
                wanted = {i for part in ("train", "val", "test") for i in ids[part]}
                rows = np.flatnonzero(graphs.table["id"].astype(str).isin(wanted).to_numpy())
                if len(rows) < len(wanted):
                    skipped.append(f"{folder}: {len(wanted) - len(rows):,} of its crystals are not in {graphs.label}")
                    continue
                whole = len(rows) == len(graphs)
                same = graphs if whole else graphs.subset(rows)  # its name and source: the key the run had
                where = {i: k for k, i in enumerate(same.table["id"].astype(str))}
                split = {part: np.array([where[i] for i in ids[part]]) for part in ("train", "val", "test")}
                config = TrainConfig(**saved["key"]["config"])
                hyper = saved["key"]["model"]["hyper"]
                main = (store_paths.model_run(P.store_dir, model, target, seed),)
                graph_set = None if same is sets[model] else same  # None: the model's graph set, which workers hold
                jobs.append(
                    ModelJob(model, hyper, target, config, Path(P.store_dir), split, BESIDE_MATGL_1, graph_set, main)
                )
                old.append(saved["record"])
    return jobs, old, skipped


def beside_matgl1(P: ModelsParams, run: Run, sets: dict[str, GraphSet]) -> pd.DataFrame | None:
    """MEGNet and M3GNet of the installed matgl (4.1.2) beside the stored matgl 1.0.0 runs (M3GNet's three-body
    messages on the wrong bonds), same crystals, split, seed and budget, paired by seed (None: no such runs)."""
    if not P.beside_matgl1:
        return None
    jobs, old, skipped = matgl1_jobs(P, sets)
    for why in skipped:
        print(f"matgl 1.0.0 run not repeated: {why}", flush=True)
    if not jobs:
        print(f"no matgl 1.0.0 runs in {Path(P.store_dir).resolve()} to compare with", flush=True)
        return None
    done = run_jobs(_train_job, jobs, sets, P.workers, desc="matgl 4.1.2 beside matgl 1.0.0")
    rows = [
        {
            "model": catalogue.model_display(job.model),
            "target": catalogue.target(job.target).display,
            "unit": catalogue.target(job.target).unit,
            "seed": job.config.seed,
            "crystals": row["crystals"],
            "test": row["test"],
            "MAE (matgl 1.0.0, three-body routing defect)": before["metrics"]["mae"],
            "MAE (matgl 4.1.2)": row["mae"],
            "R2 (matgl 1.0.0, three-body routing defect)": before["metrics"]["r2"],
            "R2 (matgl 4.1.2)": row["r2"],
        }
        for job, (row, _), before in zip(jobs, done, old)
    ]
    table = pd.DataFrame(rows)
    old_mae, new_mae = table["MAE (matgl 1.0.0, three-body routing defect)"], table["MAE (matgl 4.1.2)"]
    table["relative MAE gain"] = 1 - new_mae / old_mae
    paired = []
    for (model, target, unit), group in table.groupby(["model", "target", "unit"], sort=False):
        before, after = group["MAE (matgl 1.0.0, three-body routing defect)"], group["MAE (matgl 4.1.2)"]
        p = paired_p(after, before)
        paired.append(
            {
                "model": model,
                "target": target,
                "unit": unit,
                "seeds": len(group),
                "crystals": int(group["crystals"].iloc[0]),
                "test": int(group["test"].iloc[0]),
                "MAE matgl 1.0.0": mean_std(before),
                "MAE matgl 4.1.2": mean_std(after),
                "relative MAE gain": float(1 - after.mean() / before.mean()),
                "paired t-test p": p,
            }
        )
    summary = with_verdicts(pd.DataFrame(paired), "relative MAE gain", "matgl 4.1.2 better", "matgl 4.1.2 worse")
    where = ", ".join(sorted({(j.graphs or sets[j.model]).label for j in jobs}))
    run.save_table(
        table,
        "matgl_versions_runs",
        f"MEGNet and M3GNet: matgl 1.0.0 (three-body routing defect) against matgl 4.1.2 per run, same crystals, "
        f"split, seed and budget: {where}",
        finding=f"{len(table)} pairs of runs; matgl 4.1.2's test MAE is lower in {int((table['relative MAE gain'] > 0).sum())} "
        f"of them (relative gain {table['relative MAE gain'].min():+.0%} to {table['relative MAE gain'].max():+.0%})"
        + (f"; {len(skipped)} stored runs not repeated (their crystals are not all here)." if skipped else "."),
    )
    run.save_table(
        summary,
        "matgl_versions",
        f"MEGNet and M3GNet, matgl 1.0.0 against matgl 4.1.2, paired by seed (Benjamini-Hochberg q < "
        f"{FALSE_DISCOVERY_RATE} for a verdict; three seeds or more): {where}",
        finding="; ".join(
            f"{r['model']} {r['target']}: {r['MAE matgl 1.0.0']} -> {r['MAE matgl 4.1.2']} {r['unit']} "
            f"({r['relative MAE gain']:+.0%}, {r['verdict']})"
            for _, r in summary.iterrows()
        )
        + ".",
    )
    return summary


def train_models(
    models: list[str],
    targets: list[str],
    seeds: list[int],
    sets: dict[str, GraphSet],
    config: TrainConfig,
    store_root: Path,
    hyper: dict[str, dict] | None = None,
    workers: int = 1,
    model_seeds: dict[str, list[int]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every (model, target, seed): one row of test metrics each, and all predictions.

    ``sets`` maps each model to the graph set it reads (:func:`load_graph_sets`); ``hyper`` maps a
    model to hyperparameters that override its defaults; ``config.seed`` is replaced by each seed
    (``model_seeds``: a model's own, fewer seeds). ``workers`` runs that many trainings at once in separate
    processes (one thread each: the same results as one by one on one thread).
    """
    hyper, model_seeds = hyper or {}, model_seeds or {}
    jobs = [
        ModelJob(m, hyper.get(m, {}), t, replace(config, seed=s), Path(store_root))
        for t in targets
        for s in seeds
        for m in models
        if s in model_seeds.get(m, seeds)
    ]
    done = run_jobs(_train_job, jobs, sets, workers, desc="runs")
    return pd.DataFrame([row for row, _ in done]), pd.concat([pred for _, pred in done], ignore_index=True)


def summarise(runs: pd.DataFrame, metrics: tuple[str, ...] = METRICS) -> pd.DataFrame:
    """Mean ± std over seeds of each metric, one row per model and target (with units and seed count)."""
    rows = []
    for (model, target), group in runs.groupby(["model", "target"], sort=False):
        row = {
            "model": catalogue.model_display(model),
            "target": catalogue.target(target).display,
            "unit": catalogue.target(target).unit,
            "seeds": len(group),
            "test crystals": int(group["test"].iloc[0]),
        }
        for metric in metrics:
            row[metric.upper() if metric != "r2" else "R2"] = mean_std(group[metric])
        row["seconds/run"] = round(float(group["seconds"].mean()))
        rows.append(row)
    return pd.DataFrame(rows)


def ranking_finding(runs: pd.DataFrame) -> str:
    """What the central metrics show, from the runs: per target the models from lowest to highest mean test MAE, and
    which are measured on fewer test crystals (a subset: not comparable with the others row for row)."""
    parts = []
    for target, rows in runs.groupby("target", sort=False):
        ranked = rows.groupby("model", sort=False).agg(mean=("mae", "mean"), test=("test", "first")).sort_values("mean")
        most = ranked["test"].max()
        order = ", ".join(
            f"{catalogue.model_display(model)} {r['mean']:.3g}"
            + (f" (on {int(r['test']):,} test crystals)" if r["test"] < most else "")
            for model, r in ranked.iterrows()
        )
        info = catalogue.target(target)
        parts.append(f"{info.display} MAE ({info.unit}), lowest first: {order}")
    fewer = (
        "; rows on fewer test crystals come from a subset and rank only among themselves"
        if any("test crystals)" in p for p in parts)
        else ""
    )
    return "; ".join(parts) + fewer + "."


def beside_paper(runs: pd.DataFrame) -> pd.DataFrame:
    """CGCNN's test MAE (mean ± std over seeds) beside the CGCNN paper's for each target both report."""
    rows = []
    for target, mae in published.CGCNN_MP_MAE.items():
        ours = runs[(runs["model"] == "cgcnn") & (runs["target"] == target)]
        if len(ours):
            info = catalogue.target(target)
            rows.append(
                {
                    "target": info.display,
                    "unit": info.unit,
                    "MAE (CGCNN paper)": mae,
                    "MAE (this study)": mean_std(ours["mae"]),
                    "R2 (this study)": mean_std(ours["r2"]),
                    "seeds": len(ours),
                    "crystals (this study)": int(ours["crystals"].iloc[0]),
                    "test crystals (this study)": int(ours["test"].iloc[0]),
                }
            )
    return pd.DataFrame(rows)


def prepare(P: ModelsParams, run: Run) -> tuple[dict[str, GraphSet], str]:
    """The graph sets of the study and the caption fragment naming them; writes the model and skip tables."""
    sets = load_graph_sets(P.dataset, P.limit, P.models, P.workers, P.model_hyper, P.model_limits)
    first = max(sets.values(), key=len)
    where = describe_sets(sets)
    models = model_table(P.models)
    run.save_table(
        models,
        "models",
        f"Models and their default hyperparameters; overrides: {P.model_hyper or 'none'}",
        finding=f"{len(models)} models on two kinds of graph: "
        + "; ".join(
            f"{kind} graphs: {', '.join(catalogue.model_display(m) for m in group['model'])}"
            for kind, group in models.groupby("graphs", sort=False)
        )
        + ". Each is trained from scratch with the same optimiser, epochs and split.",
    )
    skips = first.skips.summary()
    run.save_table(
        skips,
        "skips",
        f"Crystals of {first.name} left out (no graph for some model), counted by reason",
        finding=f"{int(skips['count'].sum()) if len(skips) else 0} crystals of {first.name} have no graph for some "
        "model and are left out of every model's runs, so all models see the same crystals"
        + (f" (e.g. {skips['example'].iloc[0]})." if len(skips) else "."),
    )
    return sets, where


def train_all(P: ModelsParams, run: Run, sets: dict[str, GraphSet], where: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every model x target x seed; tables of runs, predictions, the mean ± std summary and CGCNN beside its paper."""
    config = TrainConfig(  # seed: per run
        epochs=P.epochs, batch_size=P.batch_size, lr=P.lr, patience=P.patience, device=P.device
    )
    runs, predictions = train_models(
        P.models, P.targets, P.seeds, sets, config, Path(P.store_dir), P.model_hyper, P.workers, P.model_seeds
    )
    run.save_table(
        runs,
        "runs",
        f"Test metrics of every run ({P.epochs} epochs, batch {P.batch_size}, lr {P.lr}): {where}",
        markdown=False,
        finding=f"{len(runs)} runs ({runs['model'].nunique()} models x {runs['target'].nunique()} targets x their "
        f"seeds), {runs['seconds'].sum() / 3600:.1f} CPU-hours of training in all; the summary below averages them.",
    )
    for name, part in predictions.groupby("model", sort=False):
        run.save_table(
            part,
            f"predictions_{name}",
            f"{name}: predictions of every split, target and seed, {where}",
            markdown=False,
            finding=f"{len(part):,} predictions of {catalogue.model_display(name)} (every crystal of every split, "
            "target and seed); the parity plots below show the test rows of the first seed.",
        )
    budget = f"{P.epochs} epochs" + (
        f", early stopping after {P.patience} without a lower validation MAE" if P.patience else ""
    )
    summary = summarise(runs)
    run.save_table(
        summary,
        "metrics",
        f"Centralised test metrics, mean ± std over {P.seeds_label()}, {budget}: {where}",
        finding=ranking_finding(runs),
    )
    if len(paper := beside_paper(runs)):
        run.save_table(
            paper,
            "vs_paper",
            f"CGCNN beside {published.CGCNN_PAPER} ({published.CGCNN_MP_DATASET}, its own MP snapshot and split), "
            f"{budget}: {describe_sets({'cgcnn': sets['cgcnn']})}",
            finding="; ".join(
                f"{r['target']}: {r['MAE (this study)'].split(' ± ')[0]} against the paper's {r['MAE (CGCNN paper)']} "
                f"{r['unit']}"
                for _, r in paper.iterrows()
            )
            + f" (this study: {budget}, mp-cgcnn; the paper: its own snapshot, split and training length).",
        )
    return runs, predictions


def figures(P: ModelsParams, run: Run, runs: pd.DataFrame, predictions: pd.DataFrame, where: str) -> None:
    """Parity plots (first seed) and test MAE by model."""
    first_seed = predictions[predictions["seed"] == P.seeds[0]]
    test = first_seed[first_seed["split"] == "test"]
    r2 = {
        (model, target): 1 - ((g["pred"] - g["true"]) ** 2).sum() / ((g["true"] - g["true"].mean()) ** 2).sum()
        for (model, target), g in test.groupby(["model", "target"], sort=False)
    }
    worst = min(r2, key=r2.get)
    run.save_figure(
        plots.parity_grid(first_seed, f"Test split, seed {P.seeds[0]}: {where}"),
        "parity",
        f"Predicted against true on the test split (seed {P.seeds[0]}), {where}",
        finding=f"Test R2 of the first seed from {min(r2.values()):.3f} ({catalogue.model_display(worst[0])}, "
        f"{catalogue.target(worst[1]).display}) to {max(r2.values()):.3f} over the models and targets shown.",
    )
    run.save_figure(
        plots.metric_bars(runs, "mae"),
        "mae_bars",
        f"Test MAE, mean ± std over {P.seeds_label()}, {where}",
        finding=ranking_finding(runs),
    )


def all_crystals(
    P: ModelsParams, run: Run, sets: dict[str, GraphSet], predictions: pd.DataFrame
) -> pd.DataFrame | None:
    """The headline runs of ``all_crystals``: a model of ``model_limits`` trained on every crystal of the data set,
    on the split (by id) of CGCNN's run of the same target and seed, beside every other model's run on the same
    test crystals and the published figures (None: no such runs)."""
    if not P.all_crystals:
        return None
    hyper = P.model_hyper or {}
    config = TrainConfig(epochs=P.epochs, batch_size=P.batch_size, lr=P.lr, patience=P.patience, device=P.device)
    jobs, missing = [], {}
    for model, targets in P.all_crystals.items():
        graphs = datasets.load_mp(P.dataset, P.limit, graph_spec(model, **hyper.get(model, {})), P.workers)
        seed = P.seeds_for(model)[0]
        for target in targets:
            split_ids = json.loads(
                (store_paths.model_run(P.store_dir, "cgcnn", target, seed) / "split.json").read_text()
            )
            usable = graphs.with_finite(target)
            split = split_of_ids(usable, {part: split_ids[part] for part in ("train", "val", "test")})
            missing[model, target] = sum(len(split_ids[p]) for p in split) - sum(len(v) for v in split.values())
            jobs.append(
                ModelJob(model, hyper.get(model, {}), target, replace(config, seed=seed), Path(P.store_dir), split,
                         ALL_CRYSTALS, usable)
            )  # fmt: skip
    done = run_jobs(_train_job, jobs, sets, P.workers, desc="all crystals")
    rows = []
    for job, (row, predicted) in zip(jobs, done):
        test = predicted[predicted["split"] == "test"].set_index("id")
        info = catalogue.target(job.target)
        what = {"target": info.display, "unit": info.unit, "seed": job.config.seed}
        rows.append(
            what
            | {"run": f"{catalogue.model_display(job.model)} on every crystal", "trained on": row["train"]}
            | {"test crystals": len(test), "MAE": row["mae"], "R2": row["r2"]}
            | {"note": f"{missing[job.model, job.target]} crystals of CGCNN's split have no graph for it"}
        )
        others = predictions[
            (predictions["target"] == job.target) & (predictions["seed"] == job.config.seed)
            & (predictions["split"] == "test") & predictions["id"].isin(test.index)
        ]  # fmt: skip
        for model, part in others.groupby("model", sort=False):
            trained = int((predictions["model"].eq(model) & predictions["target"].eq(job.target)
                           & predictions["seed"].eq(job.config.seed) & predictions["split"].eq("train")).sum())  # fmt: skip
            rows.append(
                what
                | {"run": f"{catalogue.model_display(model)} of this notebook ({len(sets[model]):,} crystals)"}
                | {
                    "trained on": trained,
                    "test crystals": len(part),
                    "MAE": float((part["pred"] - part["true"]).abs().mean()),
                }
                | {"note": "the headline run's test crystals it was also tested on"}
            )
        paper = [r for r in published.FEDERATED_TABLE1 if r["model"] == job.model and r["target"] == job.target]
        for r in paper:
            rows.append(what | {"run": f"FedAvg {catalogue.model_display(job.model)}, {published.FEDERATED_PAPER}"}
                        | {"MAE": r["mae"], "R2": r["r2"], "note": "mp.2018.6.1, its own split"})  # fmt: skip
        if job.model == "m3gnet" and job.target == "formation_energy_per_atom":
            rows.append(what | {"run": f"central M3GNet, {published.M3GNET_PAPER}", "MAE": published.M3GNET_EFORM_MAE}
                        | {"note": "mp.2018.6.1, its own split"})  # fmt: skip
    table = pd.DataFrame(rows)
    run.save_table(
        table,
        "all_crystals",
        f"Headline runs on every crystal of {P.dataset} (beyond model_limits), on the split of CGCNN's run of the "
        f"same target and seed, beside each model of this notebook on the same test crystals and the published "
        f"figures (their own data and splits): {P.epochs} epochs",
        finding="; ".join(
            f"{r['run']}, {r['target']}: test MAE {r['MAE']:.3g} {r['unit']} on {int(r['test crystals']):,} test "
            f"crystals ({int(r['trained on']):,} trained on)"
            for _, r in table[table["run"].str.endswith("on every crystal")].iterrows()
        )
        + ". The published figures come from other data, splits and training budgets; this notebook's models "
        "are scored on the headline run's test crystals they were also tested on.",
    )
    return table
