"""06_transfer: from pre-training to few data: a pre-trained encoder with a new head, fine-tuned on N crystals.

The encoder (everything before the crystal vector) comes from a model trained on MP, centrally
(04b_models) or federatedly (05_federated), read from the run store; the head is re-initialised. Every N
uses the same test (and validation pool) split of the target data set; the N training crystals are
drawn from its training split with the run's seed, and the validation set shrinks with N in the 6:2
ratio of the full split (at least 10 crystals), as a user with N labelled crystals would have. A seed
draws the same crystals for every source, so pre-trained and scratch runs are compared paired by seed.
Each point of a learning curve is a run of the store:
``<store>/06_transfer/<model>/<source>/<mode>/n<N>/seed<k>/``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from mlib import catalogue, datasets, model_file, plots, provenance, store, store_paths
from mlib.catalogue import THERMAL_TARGET
from mlib.encoders import load_encoder
from mlib.graphs.featurize import GraphSet
from mlib.graphs.neighbors import GraphSpec
from mlib.models.registry import build_model, graph_spec
from mlib.outputs import FALSE_DISCOVERY_RATE, Run, count_verdicts, mean_std, paired_p, results_of, with_verdicts
from mlib.parallel import run_jobs
from mlib.params import FineTune, TrainConfig, TransferParams
from mlib.study.nb02_train import best_architecture
from mlib.training import few_shot_split, fit_regressor, regression_metrics, split_of_ids

NOTEBOOK = store_paths.TRANSFER
SCRATCH = "scratch"
BETTER, WORSE = "better than scratch", "worse than scratch"


def fine_tune_run(
    model: str,
    hyper: dict,
    graph_set: GraphSet,
    target: str,
    n_train: int | None,
    seed: int,
    encoder: str | None,
    fine_tune: FineTune | None,
    config: TrainConfig,
    store_root: Path,
    source: str,
) -> dict:
    """One point of the learning curve (or the store's finished run with the same key)."""
    mode = fine_tune.encoder if fine_tune else SCRATCH
    graph_set = graph_set.with_finite(target)
    split = few_shot_split(len(graph_set), n_train, seed)
    path = Path(store_root) / encoder if encoder else None

    def build() -> nn.Module:
        net = build_model(model, **hyper)
        if path is not None:
            load_encoder(net, path)
        return net

    extra = {"encoder": {"file": encoder, "sha256": provenance.file_digest(path)} if path else None}
    result = fit_regressor(
        build,
        graph_set,
        target,
        replace(config, seed=seed),
        store_paths.transfer_run(store_root, model, source, mode, n_train, seed),
        resume=False,
        show=False,
        split=split,
        fine_tune=fine_tune,
        key_extra=extra,
    )
    pretraining, _, pretrain_target = source.partition("-")
    return {
        "model": model,
        "source": source,
        "pretraining": pretraining,
        "pretrain_target": pretrain_target or None,
        "mode": mode,
        "n_train": len(split["train"]),
        "n": n_train or "all",
        "seed": seed,
        "test": len(split["test"]),
        **{k: result.metrics[k] for k in ("mae", "rmse", "r2", "pearson_r")},
        "epochs": len(result.history),
        "seconds": result.seconds,
    }


@dataclass(frozen=True)
class FineTuneJob:
    """One point of a learning curve (:func:`fine_tune_run`) that a worker process makes on its model's graphs."""

    model: str
    hyper: dict
    target: str
    n_train: int | None
    seed: int
    encoder: str | None  # a pre-trained model file relative to the store; None: from scratch
    fine_tune: FineTune | None
    config: TrainConfig
    store_root: Path
    source: str


def _job(sets: dict[str, GraphSet], job: FineTuneJob) -> dict:
    return fine_tune_run(
        job.model,
        job.hyper,
        sets[job.model],
        job.target,
        job.n_train,
        job.seed,
        job.encoder,
        job.fine_tune,
        job.config,
        job.store_root,
        job.source,
    )


def learning_curves(
    models: dict[str, dict],
    sets: dict[str, GraphSet],
    target: str,
    sizes: list[int | None],
    seeds: list[int],
    encoders: dict[str, dict[str, str]],
    modes: list[FineTune],
    config: TrainConfig,
    store_root: Path,
    workers: int = 1,
) -> pd.DataFrame:
    """Test metrics for every model, N, seed and source: ``scratch`` plus each pre-trained encoder x mode.

    ``models`` maps a model to its hyperparameters, ``sets`` to its thermal graphs, ``encoders`` to its
    sources: a label (``fedavg-band_gap``) -> a model file, relative to the store.
    """
    root = Path(store_root)
    jobs = []
    for model, hyper in models.items():
        jobs += [
            FineTuneJob(model, hyper, target, n, s, None, None, config, root, SCRATCH) for n in sizes for s in seeds
        ]
        jobs += [
            FineTuneJob(model, hyper, target, n, s, path, mode, config, root, source)
            for source, path in encoders[model].items()
            for mode in modes
            for n in sizes
            for s in seeds
        ]
    return pd.DataFrame(run_jobs(_job, jobs, sets, workers, desc="fine-tuning runs"))


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """MAE and Pearson R, mean ± std over seeds, per model, source, mode and N."""
    info = catalogue.target(THERMAL_TARGET)
    rows = []
    for (model, source, mode, n), group in runs.groupby(["model", "source", "mode", "n_train"], sort=False):
        rows.append(
            {
                "model": catalogue.model_display(model),
                "source": catalogue.source_display(source),
                "mode": mode,
                "N": n,
                "seeds": len(group),
                f"MAE ({info.axis_unit})": mean_std(group["mae"] / info.scale),
                "Pearson R": mean_std(group["pearson_r"]),
            }
        )
    return pd.DataFrame(rows)


def _paired(a: pd.DataFrame, b: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """MAE of ``a`` and ``b`` on the seeds both have, paired by seed (the same N crystals drawn)."""
    joined = a.set_index("seed")["mae"].to_frame("a").join(b.set_index("seed")["mae"].rename("b"), how="inner")
    return joined["a"].to_numpy(), joined["b"].to_numpy()


def _compare(before: np.ndarray, after: np.ndarray, names: tuple[str, str]) -> dict:
    """Both MAEs (mean ± std in the display unit, named by ``names``), the relative MAE gain of ``after`` over
    ``before`` and the paired t-test's p (the table's verdicts correct it for multiple tests)."""
    info = catalogue.target(THERMAL_TARGET)
    gain = 1 - after.mean() / before.mean()
    p = paired_p(after, before)
    return {
        f"{names[0]} MAE ({info.axis_unit})": mean_std(before / info.scale),
        f"{names[1]} MAE ({info.axis_unit})": mean_std(after / info.scale),
        "seeds": len(after),
        "relative MAE gain": float(gain),
        "paired t-test p": p,
    }


def gains(runs: pd.DataFrame) -> pd.DataFrame:
    """Every pre-trained point against scratch at the same model and N, paired by seed.

    ``relative MAE gain`` is 1 - MAE(pre-trained) / MAE(scratch) of the seed means (negative: worse than scratch).
    The verdict needs three or more seeds and a Benjamini-Hochberg q below :data:`FALSE_DISCOVERY_RATE` over all
    the table's paired t-tests, which are read together.
    """
    rows = []
    for (model, n), at_n in runs.groupby(["model", "n_train"], sort=False):
        scratch = at_n[at_n["source"] == SCRATCH]
        for (source, mode), group in at_n[at_n["source"] != SCRATCH].groupby(["source", "mode"], sort=False):
            before, after = _paired(scratch, group)
            if not len(after):
                continue
            rows.append(
                {
                    "model": catalogue.model_display(model),
                    "source": catalogue.source_display(source),
                    "mode": mode,
                    "N": int(n),
                    **_compare(before, after, ("scratch", "pre-trained")),
                }
            )
    return with_verdicts(pd.DataFrame(rows), "relative MAE gain", BETTER, WORSE)


def where_pretraining_stops_helping(table: pd.DataFrame) -> pd.DataFrame:
    """Per model, source and mode (from :func:`gains`): the best gain, the N where the encoder is better and where it
    is worse than scratch beyond seed noise (corrected for multiple tests), and what that adds up to."""
    rows = []
    for (model, source, mode), curve in table.groupby(["model", "source", "mode"], sort=False):
        curve = curve.sort_values("N")
        sizes = curve["N"].to_numpy()
        helps, harms = (curve["verdict"] == BETTER).to_numpy(), (curve["verdict"] == WORSE).to_numpy()
        best = curve["relative MAE gain"].idxmax()
        rows.append(
            {
                "model": model,
                "source": source,
                "mode": mode,
                "best relative MAE gain": float(curve.loc[best, "relative MAE gain"]),
                "at N": int(curve.loc[best, "N"]),
                "mean gain over N": float(curve["relative MAE gain"].mean()),
                "better beyond noise at N": ", ".join(str(n) for n in sizes[helps]) or "none",
                "worse beyond noise at N": ", ".join(str(n) for n in sizes[harms]) or "none",
                "verdict": _curve_verdict(curve["seeds"].min(), sizes, helps, harms),
            }
        )
    return pd.DataFrame(rows).sort_values(["model", "mode", "mean gain over N"], ascending=[True, True, False])


def _curve_verdict(seeds: int, sizes: np.ndarray, helps: np.ndarray, harms: np.ndarray) -> str:
    if seeds < 3:
        return "too few seeds to tell"
    if harms.all():
        return "worse than scratch at every N"
    if not helps.any():
        return (
            f"never better than scratch; worse at N = {', '.join(map(str, sizes[harms]))}"
            if harms.any()
            else ("never beyond seed noise")
        )
    if helps[-1]:
        return f"better up to N = {sizes[-1]} (the largest)"
    return f"better up to N = {sizes[helps.nonzero()[0][-1]]}, not from N = {sizes[helps.nonzero()[0][-1] + 1]} on"


def federated_vs_central(runs: pd.DataFrame) -> pd.DataFrame:
    """Each federated encoder against the central one of the same model, target, mode and N, paired by seed
    (a positive gain: the federated encoder transfers better)."""
    pre = runs[runs["source"] != SCRATCH]
    rows = []
    for (model, target, mode, n), group in pre.groupby(["model", "pretrain_target", "mode", "n_train"], sort=False):
        central = group[group["pretraining"] == "central"]
        for pretraining, fed in group[group["pretraining"] != "central"].groupby("pretraining", sort=False):
            before, after = _paired(central, fed)
            if not len(after):
                continue
            rows.append(
                {
                    "model": catalogue.model_display(model),
                    "pre-training target": catalogue.target(target).display,
                    "federated": catalogue.algorithm_display(pretraining),
                    "mode": mode,
                    "N": int(n),
                    **_compare(before, after, ("central", "federated")),
                }
            )
    return with_verdicts(pd.DataFrame(rows), "relative MAE gain", "federated better", "federated worse")


def encoders(P: TransferParams) -> dict[str, dict[str, str]]:
    """Model -> source label -> pre-trained model file (relative to the store) of 05_federated's and
    04b_models' runs. Each must be a finished run of the store; a missing one names the notebook to run first."""
    runs = store.Store(P.store_dir)
    out: dict[str, dict[str, str]] = {}
    for model in P.models:
        out[model] = {}
        for target in P.pretrain_targets:
            for algorithm in P.algorithms:
                folder = store_paths.federated_run(runs.root, P.partition, algorithm, model, target, P.pretrain_seed)
                runs.record(folder, store_paths.FEDERATED)
                out[model][f"{algorithm}-{target}"] = str((folder / "model.pt").relative_to(runs.root))
            if P.central:
                folder = store_paths.model_run(runs.root, model, target, P.pretrain_seed)
                runs.record(folder, store_paths.MODELS)
                out[model][f"central-{target}"] = str((folder / "model.pt").relative_to(runs.root))
    return out


def pretraining_data(store_dir: str | Path, sources: dict[str, dict[str, str]]) -> str:
    """The crystals the encoders were pre-trained on, from their model files and runs: e.g. ``mp-cgcnn,
    36,736 crystals`` (one entry per distinct data set and size, as MEGNet/M3GNet train on subsets)."""
    runs = store.Store(store_dir)
    labels = {}
    for paths in sources.values():
        for path in paths.values():
            crystals = runs.record((runs.root / path).parent, "04b_models and 05_federated")["crystals"]
            labels[catalogue.data_label(model_file.read(runs.root / path)["dataset"], crystals)] = None
    return "; ".join(labels)


def prepare(P: TransferParams) -> tuple[dict[str, GraphSet], dict[str, dict[str, str]], str]:
    """The thermal graphs each model reads, its pre-trained encoders, and the caption fragment."""
    hyper = P.model_hyper or {}
    specs = {model: graph_spec(model, **hyper.get(model, {})) for model in P.models}
    loaded: dict = {}
    sets = {}
    for model, spec in specs.items():
        if spec not in loaded:
            loaded[spec] = datasets.load_thermal(P.dataset, spec=spec, workers=P.workers).graphs.first(P.thermal_limit)
        sets[model] = loaded[spec].with_finite(THERMAL_TARGET)
    names = ", ".join(catalogue.model_display(m) for m in P.models)
    sources = encoders(P)
    where = f"{names} on {next(iter(sets.values())).label} (test split fixed, 6:2:2)"
    return sets, sources, f"{where}; encoders pre-trained on {pretraining_data(P.store_dir, sources)}"


def curves(
    P: TransferParams, run: Run, sets: dict[str, GraphSet], sources: dict[str, dict[str, str]], where: str
) -> pd.DataFrame:
    """Every fine-tuning run; the learning-curve table and figure."""
    config = TrainConfig(epochs=P.epochs, batch_size=P.batch_size, lr=P.lr, patience=P.patience)
    modes = [FineTune(mode, P.encoder_lr_scale) for mode in P.modes]
    hyper = P.model_hyper or {}
    runs = learning_curves(
        {m: hyper.get(m, {}) for m in P.models},
        sets,
        THERMAL_TARGET,
        P.sizes,
        P.seeds,
        sources,
        modes,
        config,
        Path(P.store_dir),
        P.workers,
    )
    run.save_table(
        runs,
        "runs",
        f"Every fine-tuning run: {where}",
        markdown=False,
        finding=f"{len(runs)} runs ({runs['model'].nunique()} models x {runs['source'].nunique()} sources x their "
        f"modes x {runs['n'].nunique()} training-set sizes x {runs['seed'].nunique()} seeds), "
        f"{runs['seconds'].sum() / 3600:.1f} CPU-hours; the tables below pair them by seed.",
    )
    budget = f"{P.epochs} epochs" + (
        f", early stopping after {P.patience} without a lower validation MAE" if P.patience else ""
    )
    info = catalogue.target(THERMAL_TARGET)
    scratch = runs[runs["source"] == SCRATCH].groupby(["model", "n_train"])["mae"].mean() / info.scale
    parts = []
    for model in scratch.index.unique("model"):
        curve = scratch.xs(model, level="model").sort_index()
        parts.append(
            f"{catalogue.model_display(model)} from scratch: MAE {curve.iloc[0]:.3g} at N = {curve.index[0]:,} to "
            f"{curve.iloc[-1]:.3g} {info.axis_unit} at N = {curve.index[-1]:,}"
        )
    finding = "; ".join(parts)
    run.save_table(
        summarise(runs),
        "learning_curve",
        f"Test MAE and Pearson R (mean ± std over seeds {P.seeds}) by N, {budget}: {where}",
        finding=finding + ". Whether a pre-trained encoder beats scratch at each N is tested, paired by seed, in "
        "the tables below.",
    )
    run.save_figure(
        plots.transfer_curves(runs, THERMAL_TARGET, where),
        "learning_curve",
        f"Test MAE against the number of training crystals N (log axes; bands: ± one std over seeds {P.seeds}), "
        f"{where}",
        finding=finding + "; where the pre-trained curves lie below, the tables below say whether beyond noise.",
    )
    return runs


def gain_finding(table: pd.DataFrame) -> str:
    """What the point-by-point comparison shows: counts of verdicts and the largest gain and harm beyond noise."""
    if table.empty:
        return "No pre-trained point to compare."
    text = f"Of {len(table)} pre-trained points: {count_verdicts(table, BETTER, WORSE)}."
    for label, rows, pick in (
        ("Largest gain", table[table["verdict"] == BETTER], "idxmax"),
        ("Largest harm", table[table["verdict"] == WORSE], "idxmin"),
    ):
        if len(rows):
            row = rows.loc[getattr(rows["relative MAE gain"], pick)()]
            text += (
                f" {label} beyond noise: {row['model']} from {row['source']} ({row['mode']}) at N = {row['N']}, "
                f"MAE {-row['relative MAE gain']:+.0%} against scratch."
            )
    return text


def curve_finding(curves: pd.DataFrame) -> str:
    """What the per-encoder verdicts add up to, by fine-tuning mode."""
    parts = []
    for mode, group in curves.groupby("mode", sort=False):
        better = group[group["better beyond noise at N"] != "none"]
        named = [
            f"{r['model']} from {r['source']} at N = {r['better beyond noise at N']}" for _, r in better.iterrows()
        ]
        always_worse = (group["verdict"] == "worse than scratch at every N").sum()
        parts.append(
            f"{mode}: {len(better)} of {len(group)} encoders better than scratch at some N"
            + (f" ({'; '.join(named)})" if named else "")
            + (f"; {always_worse} worse than scratch at every N" if always_worse else "")
        )
    return "; ".join(parts) + "." if parts else "No encoder to judge."


def verdict(run: Run, runs: pd.DataFrame, where: str) -> pd.DataFrame:
    """Where pre-training helps beyond seed noise, by how much, and where it stops; which source is best."""
    table = gains(runs)
    run.save_table(
        table,
        "pretraining_gain",
        f"Each pre-trained encoder against scratch, paired by seed; the {len(table)} paired t-tests are read together: "
        f"a verdict needs Benjamini-Hochberg q < {FALSE_DISCOVERY_RATE} (false discovery rate); negative gain: worse "
        f"than scratch: {where}",
        finding=gain_finding(table),
    )
    curves = where_pretraining_stops_helping(table)
    return run.save_table(
        curves,
        "pretraining_verdict",
        f"Where each pre-trained encoder is better and where worse than scratch beyond seed noise (Benjamini-Hochberg, "
        f"false discovery rate {FALSE_DISCOVERY_RATE}), sources ranked by mean gain over N: {where}",
        finding=curve_finding(curves),
    )


def federated_verdict(run: Run, runs: pd.DataFrame, where: str) -> pd.DataFrame:
    """Federated against central pre-training, paired by seed."""
    table = federated_vs_central(runs)
    finding = (
        f"Of {len(table)} points (same encoder, target, mode and N): "
        f"{count_verdicts(table, 'federated better', 'federated worse')}: pre-training without sharing crystals "
        "transfers as well as pre-training on all of them wherever no verdict says otherwise."
        if len(table)
        else ""
    )
    return run.save_table(
        table,
        "federated_vs_central",
        f"Federated against central pre-training of the same encoder, paired by seed; the {len(table)} paired t-tests "
        f"are read together (Benjamini-Hochberg q < {FALSE_DISCOVERY_RATE} for a verdict): {where}",
        finding=finding,
    )


@dataclass(frozen=True)
class SplitJob:
    """An encoder fine-tuned on all of one of 02_train's splits, with the settings of the run from scratch there."""

    model: str
    scratch: Path  # 02_train's finished run from scratch on this split
    encoder: str  # the pre-trained model file, relative to the store
    source: str
    seed: int
    fine_tune: FineTune
    store_root: Path


def _split_run(sets: dict[str, GraphSet], job: SplitJob) -> dict[str, object]:
    """Fine-tune (or read back) one encoder on a split of 02_train; both runs' test metrics on its test crystals."""
    runs = store.Store(job.store_root)
    key = runs.key(job.scratch, "02_train")
    config = TrainConfig(**key["config"])
    graph_set = sets[job.model].with_finite(THERMAL_TARGET)
    scratch = pd.read_csv(job.scratch / "predictions.csv")
    parts = ("train", "val", "test")
    split = split_of_ids(graph_set, {part: scratch.loc[scratch["split"] == part, "id"] for part in parts})
    path = job.store_root / job.encoder

    def build() -> nn.Module:
        net = build_model(job.model, **key["model"]["hyper"])
        load_encoder(net, path)
        return net

    result = fit_regressor(
        build,
        graph_set,
        THERMAL_TARGET,
        config,
        store_paths.transfer_split_run(job.store_root, job.model, job.source, job.seed),
        show=False,
        split=split,
        fine_tune=job.fine_tune,
        key_extra={"encoder": {"file": job.encoder, "sha256": provenance.file_digest(path)}},
    )
    tuned = result.predictions[result.predictions["split"] == "test"].set_index("id")
    before = scratch[scratch["split"] == "test"].set_index("id").loc[tuned.index]
    return {
        "model": job.model,
        "seed": job.seed,
        "test": len(tuned),
        "lr": config.lr,
        "epochs": len(result.history),
        **{f"scratch {k}": v for k, v in regression_metrics(before["true"], before["pred"]).items()},
        **{f"pre-trained {k}": v for k, v in regression_metrics(tuned["true"], tuned["pred"]).items()},
    }


def _split_models(P: TransferParams) -> list[tuple[str, float | None, list[int]]]:
    """CGCNN and 02_train's other architecture of lowest validation MAE: (model, its 02 learning rate or None for
    CGCNN's reference runs, the split seeds it ran on)."""
    train = results_of(P, "02_train")
    if train.parameters["dataset"] != P.dataset:
        raise ValueError(f"02_train ran on {train.parameters['dataset']!r}, this notebook on {P.dataset!r}")
    out = [("cgcnn", None, list(train.parameters["seeds"]))]
    best = best_architecture(train)
    if best is not None:
        out.append(best[:3])
    return out


def on_02_splits(P: TransferParams, run: Run) -> pd.DataFrame | None:
    """CGCNN and 02_train's best other architecture (chosen on validation MAE) fine-tuned at N = all from the
    central MP encoder of ``on_02_splits`` on each of 02's splits, with each split's scratch settings, paired with
    the run from scratch by split; the tests read together (BH)."""
    if P.on_02_splits is None:
        return None
    info = catalogue.target(THERMAL_TARGET)
    root = Path(P.store_dir)
    source = f"central-{P.on_02_splits}"
    jobs, sets = [], {}
    for model, lr, seeds in _split_models(P):
        folder = store_paths.model_run(root, model, P.on_02_splits, P.pretrain_seed)
        store.Store(root).record(folder, store_paths.MODELS)
        encoder = str((folder / "model.pt").relative_to(root))
        scratch = {
            seed: store_paths.thermal_run(root, P.dataset, store_paths.REFERENCE, seed)
            if lr is None
            else store_paths.thermal_architecture_run(root, P.dataset, model, lr, seed)
            for seed in seeds
        }
        graph = store.Store(root).key(scratch[seeds[0]], "02_train")["graph"]  # the scratch runs' own graphs
        spec = GraphSpec(**{k: graph[k] for k in ("radius", "max_neighbors", "kind", "tie_order")})
        sets[model] = datasets.load_thermal(P.dataset, spec=spec, workers=P.workers).graphs
        tune = FineTune("train", P.encoder_lr_scale)
        jobs += [SplitJob(model, folder, encoder, source, seed, tune, root) for seed, folder in scratch.items()]
    rows = pd.DataFrame(run_jobs(_split_run, jobs, sets, P.workers, desc="02's splits"))
    table = pd.DataFrame(
        [
            {
                "model": catalogue.model_display(model),
                "splits": len(part),
                "test crystals": int(part["test"].iloc[0]),
                "scratch pearson_r": mean_std(part["scratch pearson_r"]),
                "pre-trained pearson_r": mean_std(part["pre-trained pearson_r"]),
                f"scratch mae ({info.axis_unit})": mean_std(part["scratch mae"] / info.scale),
                f"pre-trained mae ({info.axis_unit})": mean_std(part["pre-trained mae"] / info.scale),
                "relative MAE gain": float(1 - part["pre-trained mae"].mean() / part["scratch mae"].mean()),
                "paired t-test p": paired_p(part["pre-trained mae"], part["scratch mae"], least=2),
            }
            for model, part in rows.groupby("model", sort=False)
        ]
    )
    table = with_verdicts(table, "relative MAE gain", BETTER, WORSE)
    where = f"{P.dataset}, 02_train's 6:2:2 splits, N = all; encoders of 04b_models' {catalogue.target(P.on_02_splits).display} runs"
    ranked = (
        rows.assign(pre=rows["pre-trained mae"] / info.scale, scratch=rows["scratch mae"] / info.scale)
        .groupby("model", sort=False)[["scratch", "pre"]]
        .mean()
    )
    best = ranked.stack().idxmin()
    finding = (
        f"{count_verdicts(table, BETTER, WORSE)} (paired by split, Benjamini-Hochberg over {len(table)} models). "
        f"Lowest mean test MAE: {catalogue.model_display(best[0])} "
        f"{'pre-trained' if best[1] == 'pre' else 'from scratch'} ({ranked.loc[best]:.3g} {info.axis_unit})."
    )
    run.save_table(
        table,
        "on_02_splits",
        f"Pre-trained (central MP encoder, fine-tuned, mode train) against scratch on 02_train's splits, same settings "
        f"and test crystals, {info.display}: {where}",
        finding=finding,
    )
    shown = rows[["model", "seed", "test", "lr", "epochs"]].rename(columns={"seed": "split seed"})
    for side in ("scratch", "pre-trained"):
        shown[f"{side} pearson_r"] = rows[f"{side} pearson_r"]
        shown[f"{side} mae ({info.axis_unit})"] = rows[f"{side} mae"] / info.scale
    run.save_table(
        shown.assign(model=shown["model"].map(catalogue.model_display)),
        "on_02_splits_runs",
        f"Each split's run from scratch (02_train) and fine-tuned, test metrics: {where}",
        finding=f"{len(rows)} fine-tuning runs, each beside 02_train's run from scratch on the same split.",
    )
    return table
