"""07_experiment: does pre-training make graph networks accurate on a small experimental set?

Encoders are pre-trained on MP's DFT formation energy (``mp-cgcnn``) **without** the crystals of the
experimental set, centrally and federatedly (IID clients that never share crystals), then fine-tuned on N
measured formation enthalpies (``expt-dhf`` joined to its ``mp-cgcnn`` structures). Each 80:20 split fixes a
test set for every N; from the other 80 % a seed draws the N training crystals (the validation set shrinks
with N, 6:2, at least 10 crystals, from a fixed fifth of that 80 %). Baselines on the same test crystals and N:
MP's DFT value copied; DFT plus a correction fitted on the N crystals (ridge regression of experiment minus
DFT on element fractions); a composition model (Magpie + random forest); the networks from scratch; and each
pre-trained network fine-tuned on experiment minus DFT, added back to the DFT value. Runs are runs of the store:
``<store>/07_experiment/pretrain/<algorithm>/<model>/seed<k>/`` and
``<store>/07_experiment/<model>/<source>/<mode>/<target>/n<N>/split<s>/seed<k>/``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from mlib import catalogue, datasets, plots, provenance, published, store, store_paths
from mlib.catalogue import EXPT_RESIDUAL, EXPT_TARGET, MP_SPLIT
from mlib.composition import magpie_features, random_forest
from mlib.data import expt_dhf
from mlib.encoders import load_encoder
from mlib.graphs.featurize import GraphSet
from mlib.models.registry import build_model, graph_spec
from mlib.outputs import FALSE_DISCOVERY_RATE, Run, count_verdicts, mean_std, paired_p, with_verdicts
from mlib.parallel import run_jobs
from mlib.params import ExperimentParams, FineTune
from mlib.paths import REPO_ROOT
from mlib.study.nb05_federated import run_federated
from mlib.training import few_shot_split, fit_regressor, regression_metrics

NOTEBOOK = store_paths.EXPERIMENT
PRETRAIN_TARGET = "formation_energy_per_atom"
CENTRAL, SCRATCH = "central", "scratch"
DFT, DFT_RIDGE, MAGPIE = "DFT (MP)", "DFT + ridge correction", "Magpie + random forest"
BASELINE = "baseline"
SPLIT_FRACTIONS = (0.64, 0.16, 0.2)  # train pool, validation pool, test: 80:20, a fifth of the 80 % for validation
UNIT = catalogue.target(EXPT_TARGET).unit
FAMILIES = (  # chemistry_type tags -> the family the error table groups by (first match wins)
    ("intermetallic", ("intermetallic",)),
    ("halide", ("fluoride", "chloride", "bromide", "iodide")),
    ("oxide (incl. oxyanions)", ("oxide",)),
    ("chalcogenide", ("sulfide", "selenide", "telluride")),
    ("nitride, phosphide, carbide, hydride", ("nitride", "phosphide", "carbide", "hydride")),
)


def family(chemistry_type: str) -> str:
    """The chemistry family of a compound's RxnNet tags (``chloride;hydrate;oxide`` -> halide)."""
    tags = set(str(chemistry_type).split(";"))
    return next((name for name, members in FAMILIES if tags & set(members)), "other")


def experiment_split(n_total: int, n_train: int | None, split: int, seed: int) -> dict[str, np.ndarray]:
    """Row numbers of one 80:20 split (``split``: its test fifth, fixed for every N and seed; a fifth of the rest is
    the validation pool) with ``n_train`` training crystals drawn by ``seed`` (None: all)."""
    return few_shot_split(n_total, n_train, seed, split, SPLIT_FRACTIONS)


# --- data ------------------------------------------------------------------------------------------------


def load(P: ExperimentParams) -> tuple[datasets.ExperimentData, dict[str, GraphSet], GraphSet]:
    """The experimental set (as read, with its skips), each model's graphs of it, and its graph set for the
    models' shared kind (with ``family``; disputed compounds left out unless ``include_disputed``)."""
    hyper = P.model_hyper or {}
    specs = {m: graph_spec(m, **hyper.get(m, {})) for m in P.models}
    loaded: dict = {}
    sets = {}
    for model, spec in specs.items():
        if spec not in loaded:
            data = datasets.load_expt_dhf(spec, P.workers, P.limit)
            graphs = data.graphs
            graphs.table["family"] = [family(t) for t in graphs.table["chemistry_type"]]
            if not P.include_disputed:
                kept = np.flatnonzero(~graphs.table["disputed"].astype(bool).to_numpy())
                graphs = graphs.subset(kept, f"{graphs.name} without disputed values")
            loaded[spec] = (data, graphs)
        sets[model] = loaded[spec][1]
    data, graphs = next(iter(loaded.values()))
    return data, sets, graphs


def data_tables(run: Run, data: datasets.ExperimentData, graphs: GraphSet) -> None:
    """What the experimental set holds, what was left out and why, and how far DFT is from experiment."""
    skips = data.skips.summary()
    run.save_table(
        skips,
        "skips",
        f"{expt_dhf.LABEL} (RxnNet {expt_dhf.COMMIT[:7]}, {len(data.table):,} MP ids with a measured value): ids "
        "left out on the way to graphs, by reason",
        finding=f"{len(data.table):,} MP ids have a measured formation enthalpy; {len(graphs):,} become graphs "
        f"({graphs.label}); "
        + "; ".join(f"{row.count:,} {row.kind}" for row in skips.itertuples())
        + " (the last column names one example of each).",
    )
    table = graphs.table
    dft_mean, dft_mae = f"mean experiment - DFT ({UNIT})", f"MAE of DFT against experiment ({UNIT})"
    rows = []
    for name, part in [("all", table), *table.groupby("family", sort=True)]:
        rows.append(
            {
                "compounds": name,
                "crystals": len(part),
                "disputed": int(part["disputed"].sum()),
                "JANAF values": int((part["source"] == "janaf").sum()),
                dft_mean: part["residual"].mean(),
                dft_mae: part["residual"].abs().mean(),
            }
        )
    overview = pd.DataFrame(rows)
    whole = overview.iloc[0]
    run.save_table(
        overview,
        "data",
        f"{graphs.label}: measured formation enthalpy (NBS, NIST-JANAF) against MP's DFT formation energy, by "
        "chemistry family (RxnNet's tags)",
        finding=f"Copying MP's DFT value misses experiment by {whole[dft_mae]:.3f} {UNIT} on average (mean signed "
        f"{whole[dft_mean]:+.3f}: DFT is systematically off); the families differ ("
        + ", ".join(f"{r['compounds']} {r[dft_mae]:.3f}" for _, r in overview.iloc[1:].iterrows())
        + f"). {int(whole['disputed'])} values are disputed (NBS against Wang or the literature).",
    )
    both = table[table["hf_wang_ev_per_atom"].notna()]
    if len(both):
        diff = both["dhf_expt_ev_per_atom"] - both["hf_wang_ev_per_atom"]
        agreement = pd.DataFrame(
            [
                {
                    "compounds": f"{graphs.name}: both an NBS/JANAF and a Wang et al. value",
                    "crystals": len(both),
                    f"MAE between the two ({UNIT})": diff.abs().mean(),
                    f"median absolute difference ({UNIT})": diff.abs().median(),
                    "differ by > 0.05 eV/atom": int((diff.abs() > 0.05).sum()),
                }
            ]
        )
        run.save_table(
            agreement,
            "label_agreement",
            "How far two experimental compilations disagree on the same compounds: a floor for any model's MAE "
            "against one of them",
            finding=f"On the {len(both):,} compounds with both values, the two compilations differ by "
            f"{diff.abs().mean():.3f} {UNIT} on average (median {diff.abs().median():.3f}); "
            f"{int((diff.abs() > 0.05).sum())} differ by more than 0.05 {UNIT}.",
        )


def pretraining_sets(P: ExperimentParams, held_out: set[str]) -> dict[str, GraphSet]:
    """Each model's ``mp-cgcnn`` graphs without every MP id of the experimental set (not only the joined
    ones): the encoders never see an experimental crystal or its DFT label."""
    hyper = P.model_hyper or {}
    loaded: dict = {}
    out = {}
    for model in P.models:
        spec = graph_spec(model, **hyper.get(model, {}))
        if spec not in loaded:
            mp = datasets.load_mp("mp-cgcnn", P.mp_limit, spec, P.workers)
            keep = np.flatnonzero(~mp.table["id"].astype(str).isin(held_out).to_numpy())
            loaded[spec] = mp.subset(keep, f"{mp.name} without {expt_dhf.LABEL}")
        out[model] = loaded[spec]
    return out


# --- pre-training ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PretrainJob:
    """One encoder's pre-training on MP formation energy: central, or a federated algorithm over IID clients."""

    model: str
    hyper: dict
    algorithm: str
    P: ExperimentParams


def _pretrain(sets: dict[str, GraphSet], job: PretrainJob) -> dict:
    P, model, graph_set = job.P, job.model, sets[job.model]
    root = Path(P.store_dir)
    folder = store_paths.experiment_pretrain_run(root, job.algorithm, model, P.pretrain_seed)
    if job.algorithm == CENTRAL:
        result = fit_regressor(
            lambda: build_model(model, **job.hyper),
            graph_set,
            PRETRAIN_TARGET,
            P.central_config(),
            folder,
            formula_column="formula",
            fractions=MP_SPLIT,
            show=False,
        )
        metrics, crystals, seconds = result.metrics, len(result.data), result.seconds
    else:
        row, _ = run_federated(
            model, job.hyper, graph_set, PRETRAIN_TARGET, P.pretrain_config(job.algorithm), "iid", P.clients, 0.0,
            root, folder=folder,
        )  # fmt: skip
        metrics, crystals, seconds = row, row["crystals"], row["seconds"]
    return {
        "model": catalogue.model_display(model),
        "pre-training": catalogue.algorithm_display(job.algorithm),
        "algorithm": job.algorithm,
        "crystals": crystals,
        f"test MAE ({catalogue.target(PRETRAIN_TARGET).unit})": metrics["mae"],
        "test R2": metrics["r2"],
        "seconds": seconds,
        "model file": str((folder / "model.pt").relative_to(root)),
    }


def pretrain(P: ExperimentParams, run: Run, held_out: set[str]) -> tuple[pd.DataFrame, dict[str, dict[str, str]]]:
    """Every encoder (model x central and ``algorithms``) pre-trained or read back; the table and, per model,
    source -> model file relative to the store."""
    sets = pretraining_sets(P, held_out)
    algorithms = [CENTRAL, *P.algorithms]
    jobs = [PretrainJob(m, (P.model_hyper or {}).get(m, {}), a, P) for m in P.models for a in algorithms]
    table = pd.DataFrame(run_jobs(_pretrain, jobs, sets, P.workers, desc="pre-training"))
    mae = f"test MAE ({catalogue.target(PRETRAIN_TARGET).unit})"
    label = next(iter(sets.values())).label
    run.save_table(
        table,
        "pretraining",
        f"Encoders pre-trained on MP formation energy, {label} (the ids of {expt_dhf.LABEL} held out), 8:1:1 split, "
        f"central and {', '.join(catalogue.algorithm_display(a) for a in P.algorithms) or 'no federated'} over "
        f"{P.clients} IID clients; {P.rounds} rounds x {P.local_epochs} local epochs (central: as many epochs)",
        finding="Pre-training test MAE on MP's DFT labels: "
        + "; ".join(f"{r['model']} {r['pre-training']} {r[mae]:.3f}" for _, r in table.iterrows())
        + f" {catalogue.target(PRETRAIN_TARGET).unit}. None of these encoders has seen an experimental crystal.",
    )
    sources = {
        m: {r["algorithm"]: r["model file"] for _, r in table[table["model"] == catalogue.model_display(m)].iterrows()}
        for m in P.models
    }
    return table, sources


# --- fine-tuning and baselines --------------------------------------------------------------------------


@dataclass(frozen=True)
class ExperimentJob:
    """One network run on N experimental crystals of one split: from scratch or from a pre-trained encoder."""

    model: str
    hyper: dict
    target: str  # EXPT_TARGET, or EXPT_RESIDUAL (the prediction is added to the DFT value)
    n_train: int | None
    split: int
    seed: int
    source: str  # scratch, central or a federated algorithm
    encoder: str | None  # model file relative to the store
    fine_tune: FineTune | None
    P: ExperimentParams


def _experiment_job(sets: dict[str, GraphSet], job: ExperimentJob) -> tuple[dict, pd.DataFrame]:
    P, graphs = job.P, sets[job.model]
    root = Path(P.store_dir)
    split = experiment_split(len(graphs), job.n_train, job.split, job.seed)
    path = root / job.encoder if job.encoder else None

    def build():
        net = build_model(job.model, **job.hyper)
        if path is not None:
            load_encoder(net, path)
        return net

    mode = job.fine_tune.encoder if job.fine_tune else SCRATCH
    config = replace(P.fine_tune_config(), seed=job.seed)
    result = fit_regressor(
        build,
        graphs,
        job.target,
        config,
        store_paths.experiment_run(root, job.model, job.source, mode, job.target, job.n_train, job.split, job.seed),
        resume=False,
        formula_column="formula",
        show=False,
        split=split,
        fine_tune=job.fine_tune,
        key_extra={"encoder": {"file": job.encoder, "sha256": provenance.file_digest(path)} if path else None},
    )
    test = result.predictions[result.predictions["split"] == "test"]
    predicted = test[["id", "pred"]].rename(columns={"pred": "predicted"})
    row = {
        "model": catalogue.model_display(job.model),
        "source": job.source,
        "mode": mode,
        "target": "experiment - DFT" if job.target == EXPT_RESIDUAL else "experiment",
        "n": job.n_train or "all",
        "n_train": len(split["train"]),
        "split": job.split,
        "seed": job.seed,
        "epochs": len(result.history),
        "val_mae": float(result.history[config.best_by].min()) if config.best_by == "val_mae" else float("nan"),
        "seconds": result.seconds,
        "folder": str(result.folder.relative_to(root)),
    }
    return row, predicted


def network_jobs(P: ExperimentParams, sources: dict[str, dict[str, str]]) -> list[ExperimentJob]:
    """Scratch, each encoder x mode on the experimental value and (``residual``) each encoder trained on
    experiment minus DFT, for every N, split and seed."""
    jobs = []
    grid = [(n, s, k) for n in P.sizes for s in P.splits for k in P.seeds]
    for model in P.models:
        hyper = (P.model_hyper or {}).get(model, {})
        jobs += [ExperimentJob(model, hyper, EXPT_TARGET, n, s, k, SCRATCH, None, None, P) for n, s, k in grid]
        for source, file in sources.get(model, {}).items():
            for mode in P.modes:
                tune = FineTune(mode, P.encoder_lr_scale)
                jobs += [ExperimentJob(model, hyper, EXPT_TARGET, n, s, k, source, file, tune, P) for n, s, k in grid]
            if P.residual:
                tune = FineTune("train", P.encoder_lr_scale)
                jobs += [ExperimentJob(model, hyper, EXPT_RESIDUAL, n, s, k, source, file, tune, P) for n, s, k in grid]
    return jobs


def _scored(row: dict, predicted: pd.DataFrame, table: pd.DataFrame) -> dict:
    """A run's row with its test MAE, RMSE and R2 against experiment (a residual prediction added back to the DFT
    value), on all test crystals and on the undisputed ones."""
    part = table.set_index("id").loc[predicted["id"].astype(str)]
    pred = predicted["predicted"].to_numpy(dtype=float)
    if row["target"] == "experiment - DFT":
        pred = pred + part["dft"].to_numpy()
    true = part[EXPT_TARGET].to_numpy()
    metrics = regression_metrics(true, pred)
    undisputed = ~part["disputed"].astype(bool).to_numpy()
    return {
        **row,
        "test": len(true),
        **{m: metrics[m] for m in ("mae", "rmse", "r2")},
        "mae_undisputed": float(np.abs(pred - true)[undisputed].mean()),
    }


def baseline_runs(P: ExperimentParams, graphs: GraphSet) -> tuple[list[dict], list[pd.DataFrame]]:
    """DFT copied, DFT + ridge correction and Magpie + random forest, for every N, split and seed, on the
    networks' test crystals: rows (as networks' rows) and test predictions. The fits read the N training and the
    validation crystals, the labelled crystals a network of that N sees."""
    from sklearn.linear_model import RidgeCV

    table = graphs.table
    fractions = element_fractions(table["reduced_formula"])
    magpie = magpie_features(list(table["reduced_formula"]))
    y, dft, residual = table[EXPT_TARGET].to_numpy(), table["dft"].to_numpy(), table[EXPT_RESIDUAL].to_numpy()
    rows, predictions = [], []
    for n in P.sizes:
        for s in P.splits:
            for k in P.seeds:
                split = experiment_split(len(graphs), n, s, k)
                train, test = np.concatenate([split["train"], split["val"]]), split["test"]
                ridge = RidgeCV(alphas=np.logspace(-4, 2, 13)).fit(fractions[train], residual[train])
                forest = random_forest(magpie[train], y[train], seed=k, trees=P.trees)
                for name, pred in (
                    (DFT, dft[test]),
                    (DFT_RIDGE, dft[test] + ridge.predict(fractions[test])),
                    (MAGPIE, forest.predict(magpie[test])),
                ):
                    row = {"model": name, "source": BASELINE, "mode": "-", "target": "experiment", "n": n or "all",
                           "n_train": len(split["train"]), "split": s, "seed": k, "epochs": None, "val_mae": None,
                           "seconds": None, "folder": None}  # fmt: skip
                    predicted = pd.DataFrame({"id": table["id"].to_numpy()[test], "predicted": pred})
                    rows.append(_scored(row, predicted, table))
                    predictions.append(
                        predicted.assign(**{c: row[c] for c in ("model", "source", "n", "split", "seed")})
                    )
    return rows, predictions


def element_fractions(formulas: pd.Series) -> np.ndarray:
    """``(len(formulas), 103)`` atomic fractions of H..Lr per formula."""
    from pymatgen.core import Composition

    out = np.zeros((len(formulas), 103))
    for i, formula in enumerate(formulas):
        for element, fraction in Composition(formula).fractional_composition.items():
            out[i, element.Z - 1] = fraction
    return out


def train_all(P: ExperimentParams, sets: dict[str, GraphSet], graphs: GraphSet, sources: dict) -> pd.DataFrame:
    """Every network run and baseline: one row per run (``runs.csv``), MAE against experiment in eV/atom."""
    jobs = network_jobs(P, sources)
    done = run_jobs(_experiment_job, jobs, sets, P.workers, desc="experimental runs")
    rows = [_scored(row, predicted, sets[job.model].table) for job, (row, predicted) in zip(jobs, done)]
    base_rows, _ = baseline_runs(P, graphs)
    return pd.DataFrame(rows + base_rows)


# --- reading the runs ------------------------------------------------------------------------------------


def variant(runs: pd.DataFrame) -> pd.Series:
    """How tables and figures name a run's method: ``CGCNN, central, train``, ``CGCNN from scratch``, a baseline."""
    out = []
    for r in runs.itertuples(index=False):
        if r.source == BASELINE:
            out.append(r.model)
        elif r.source == SCRATCH:
            out.append(f"{r.model} from scratch")
        else:
            label = f"{r.model}, {catalogue.algorithm_display(r.source)}-pre-trained, {r.mode}"
            out.append(label + (", on experiment - DFT" if r.target == "experiment - DFT" else ""))
    return pd.Series(out, index=runs.index)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Test MAE (all and undisputed) mean ± std over splits x seeds, per method and N."""
    runs = runs.assign(method=variant(runs))
    rows = []
    for (method, n), group in runs.groupby(["method", "n"], sort=False):
        rows.append(
            {
                "method": method,
                "n": n,
                "runs": len(group),
                "train crystals": int(group["n_train"].iloc[0]),
                "test crystals": int(group["test"].iloc[0]),
                f"MAE ({UNIT})": mean_std(group["mae"]),
                "mean MAE": group["mae"].mean(),
                "mean validation MAE": group["val_mae"].mean(),
                f"MAE without disputed ({UNIT})": mean_std(group["mae_undisputed"]),
            }
        )
    return pd.DataFrame(rows)


def paired(runs: pd.DataFrame, method: str, against: str) -> pd.DataFrame:
    """Per N, the test MAE of ``method`` and ``against`` paired by split and seed: the relative gain (positive:
    ``method`` better) and the paired t-test's p."""
    runs = runs.assign(method=variant(runs))
    rows = []
    for n in dict.fromkeys(runs["n"]):
        a = runs[(runs["method"] == method) & (runs["n"] == n)].set_index(["split", "seed"])["mae"]
        b = runs[(runs["method"] == against) & (runs["n"] == n)].set_index(["split", "seed"])["mae"]
        both = a.index.intersection(b.index)
        if len(both) == 0:
            continue
        a, b = a.loc[both], b.loc[both]
        rows.append(
            {
                "method": method,
                "against": against,
                "n": n,
                "pairs": len(both),
                f"MAE ({UNIT})": a.mean(),
                f"MAE against ({UNIT})": b.mean(),
                "relative MAE gain": float(1 - a.mean() / b.mean()),
                "paired t-test p": paired_p(a.to_numpy(), b.to_numpy()),
            }
        )
    return pd.DataFrame(rows)


def comparisons(runs: pd.DataFrame) -> pd.DataFrame:
    """Every pre-trained method against its network from scratch and against DFT + ridge correction, and every
    federated encoder against the central one (same model, mode, target), read together (Benjamini-Hochberg)."""
    names = variant(runs)
    pretrained = runs[~runs["source"].isin([BASELINE, SCRATCH])].assign(method=names)
    tables = []
    for method, group in pretrained.groupby("method", sort=False):
        r = group.iloc[0]
        tables.append(paired(runs, method, f"{r['model']} from scratch"))
        tables.append(paired(runs, method, DFT_RIDGE))
        if r["source"] != CENTRAL:  # the same model, mode and target, pre-trained centrally
            tables.append(paired(runs, method, variant(group.head(1).assign(source=CENTRAL)).iloc[0]))
    scratch = runs[runs["source"] == SCRATCH].assign(method=names)
    for method in dict.fromkeys(scratch["method"]):
        tables.append(paired(runs, method, DFT_RIDGE))
    table = pd.concat([t for t in tables if len(t)], ignore_index=True)
    return with_verdicts(table, "relative MAE gain", "better", "worse")


def best_method(summary: pd.DataFrame) -> pd.Series:
    """The network of lowest mean validation MAE at N = all: chosen without looking at the test crystals."""
    at_all = summary[(summary["n"] == "all") & summary["mean validation MAE"].notna()]
    return at_all.sort_values("mean validation MAE").iloc[0]


def read_runs(P: ExperimentParams, run: Run, graphs: GraphSet, runs: pd.DataFrame) -> pd.DataFrame:
    """Tables, verdicts and figures of the runs."""
    where = f"{graphs.label}, {len(P.splits)} 80:20 splits x seeds {P.seeds}"
    runs = runs.assign(n=runs["n"].astype(str))
    run.save_table(
        runs,
        "runs",
        f"Every run, baselines included: test MAE against experiment ({UNIT}), all test crystals and undisputed "
        f"ones; {where}",
        finding=f"{len(runs):,} runs: {int((runs['source'] != BASELINE).sum()):,} networks and "
        f"{int((runs['source'] == BASELINE).sum()):,} baseline fits; the verdict below can be recomputed from them.",
        markdown=False,
    )
    summary = summarise(runs)
    best = best_method(summary)
    dft = summary[(summary["method"] == DFT) & (summary["n"] == "all")]["mean MAE"].iloc[0]
    goal = published.EXPT_GOAL_MAE
    run.save_table(
        summary.drop(columns=["mean MAE", "mean validation MAE"]),
        "summary",
        f"Test MAE against measured formation enthalpy, mean ± std over splits and seeds, per method and N; {where}",
        finding=f"At N = all the best network (lowest validation MAE) is {best['method']} with test MAE "
        f"{best[f'MAE ({UNIT})']} {UNIT} "
        f"({'meets' if best['mean MAE'] <= goal else 'misses'} the goal of {goal} and "
        f"{'beats' if best['mean MAE'] < published.EXPT_ANCHORS['ElemNet pre-trained on OQMD, fine-tuned'] else 'does not beat'}"
        f" ElemNet's 0.07 on its own data); copying MP's DFT value gives {dft:.3f}.",
    )
    verdicts = comparisons(runs)
    run.save_table(
        verdicts,
        "verdicts",
        f"Pre-trained against scratch, against DFT + ridge correction, and federated against central, paired by "
        f"split and seed at each N (Benjamini-Hochberg q < {FALSE_DISCOVERY_RATE} over the whole table); {where}",
        finding=count_verdicts(verdicts, "better", "worse") + ". " + goal_finding(verdicts, P),
    )
    fed = verdicts[verdicts["against"].str.contains("central-pre-trained")]
    if len(fed):
        run.save_table(
            fed,
            "federated_vs_central",
            f"Federated against central pre-training, fine-tuned on the same experimental crystals; {where}",
            finding="The paper's question on experiment, federated against central pre-training at each N: "
            + count_verdicts(fed, "better", "worse")
            + f" (mean relative MAE gain of federated {fed['relative MAE gain'].mean():+.1%}).",
        )
    figures(P, run, runs, summary, graphs, best, where)
    return summary


def goal_finding(verdicts: pd.DataFrame, P: ExperimentParams) -> str:
    """Whether the best pre-trained network is below DFT + ridge correction at every N >= 200."""
    against = verdicts[verdicts["against"] == DFT_RIDGE]
    large = against[against["n"].map(lambda n: n == "all" or int(n) >= 200)]
    if large.empty:
        return "No N >= 200 in this profile to test the goal against DFT + ridge correction."
    per_method = large.groupby("method")["verdict"].apply(lambda v: (v == "better").all())
    winners = sorted(per_method[per_method].index)
    return (
        f"Better than DFT + ridge correction at every N >= 200: {', '.join(winners)}."
        if winners
        else "No network is better than DFT + ridge correction at every N >= 200."
    )


def figures(
    P: ExperimentParams,
    run: Run,
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    graphs: GraphSet,
    best: pd.Series,
    where: str,
) -> None:
    """MAE against N with baselines and anchors; the best network's parity plot beside DFT; errors by family."""
    runs = runs.assign(method=variant(runs))
    fig = plots.experiment_curves(runs, catalogue.target(EXPT_TARGET), published.EXPT_ANCHORS)
    run.save_figure(
        fig,
        "mae_vs_n",
        f"Test MAE against measured formation enthalpy vs training crystals N (log-log), mean over splits and "
        f"seeds, band: ± std; dotted: the anchors ({published.EXPT_TRANSFER_PAPER}; {published.EXPT_SCRATCH_PAPER}; "
        f"{published.EXPT_ANCHOR_DATA}); {where}",
        finding=f"Best network at N = all: {best['method']} ({best[f'MAE ({UNIT})']} {UNIT}).",
    )
    folders = runs[(runs["method"] == best["method"]) & (runs["n"] == "all") & (runs["seed"] == P.seeds[0])]
    parts = []
    for r in folders.itertuples(index=False):
        pred = store.read_csv(Path(P.store_dir) / r.folder / "predictions.csv")
        pred = pred[pred["split"] == "test"]
        table = graphs.table.set_index("id").loc[pred["id"].astype(str)]
        value = pred["pred"].to_numpy() + (table["dft"].to_numpy() if r.target == "experiment - DFT" else 0.0)
        parts.append(
            pd.DataFrame(
                {"id": pred["id"].astype(str).to_numpy(), "experiment": table[EXPT_TARGET].to_numpy(),
                 "predicted": value, "dft": table["dft"].to_numpy(), "family": table["family"].to_numpy(),
                 "split": r.split}
            )
        )  # fmt: skip
    if not parts:
        return
    tests = pd.concat(parts, ignore_index=True)
    model_mae = (tests["predicted"] - tests["experiment"]).abs().mean()
    dft_error = (tests["dft"] - tests["experiment"]).abs().mean()
    run.save_figure(
        plots.experiment_parity(tests, best["method"]),
        "parity",
        f"{best['method']} (N = all, seed {P.seeds[0]}) and MP's DFT value against experiment on the test crystals of "
        f"{len(folders)} splits ({len(tests):,} predictions); {graphs.label}",
        finding=f"Test MAE {model_mae:.3f} {UNIT} for the network against {dft_error:.3f} for DFT on the same crystals.",
    )
    by_family = (
        tests.assign(
            network=(tests["predicted"] - tests["experiment"]).abs(), DFT=(tests["dft"] - tests["experiment"]).abs()
        )
        .groupby("family")
        .agg(crystals=("id", "size"), network=("network", "mean"), DFT=("DFT", "mean"))
        .reset_index()
        .sort_values("network")
    )
    run.save_table(
        by_family.rename(columns={"network": f"MAE {best['method']} ({UNIT})", "DFT": f"MAE DFT ({UNIT})"}),
        "errors_by_family",
        f"{best['method']} (N = all) and DFT: test MAE by chemistry family, test crystals of {len(folders)} splits; "
        f"{graphs.label}",
        finding="Lowest error: "
        + f"{by_family.iloc[0]['family']} ({by_family.iloc[0]['network']:.3f}); highest: "
        + f"{by_family.iloc[-1]['family']} ({by_family.iloc[-1]['network']:.3f} {UNIT}). "
        + f"The network is below DFT in {int((by_family['network'] < by_family['DFT']).sum())} of {len(by_family)} families.",
    )
    run.save_figure(
        plots.family_bars(by_family, best["method"], UNIT),
        "errors_by_family",
        f"Test MAE by chemistry family: {best['method']} (N = all) beside MP's DFT value; {graphs.label}",
        finding=f"Families from {by_family.iloc[0]['family']} ({by_family.iloc[0]['network']:.3f}) to "
        f"{by_family.iloc[-1]['family']} ({by_family.iloc[-1]['network']:.3f} {UNIT}).",
    )


def best_model_file(P: ExperimentParams, run: Run, runs: pd.DataFrame) -> pd.DataFrame:
    """The network that predicts the measured value itself (no DFT value needed) with the lowest validation MAE at
    N = all: its model file, and the command that predicts one's own crystals with it."""
    runs = runs.assign(method=variant(runs), n=runs["n"].astype(str))
    direct = runs[(runs["source"] != BASELINE) & (runs["target"] == "experiment") & (runs["n"] == "all")]
    if direct.empty:
        return pd.DataFrame()
    method = direct.groupby("method")["val_mae"].mean().idxmin()  # chosen on validation crystals, not test
    chosen = direct[direct["method"] == method]
    best = chosen.sort_values(["split", "seed"]).iloc[0]  # the first split and seed: not picked by its test error
    path = (Path(P.store_dir) / best["folder"] / "model.pt").resolve()
    if path.is_relative_to(REPO_ROOT):
        path = path.relative_to(REPO_ROOT)  # as a user types it from the repository's root
    table = pd.DataFrame(
        [
            {
                "method": method,
                "split": int(best["split"]),
                "seed": int(best["seed"]),
                f"test MAE ({UNIT})": best["mae"],
                "model file": str(path),
                "predict": f"python -m mlib.predict --model {path} my_crystal.cif",
            }
        ]
    )
    run.save_table(
        table,
        "best_model",
        f"The model file to predict measured formation enthalpy ({UNIT}) of one's own crystals: the best network at "
        "N = all that predicts the measured value directly (a residual model would need MP's DFT value)",
        finding=f"{method}: mean test MAE {chosen['mae'].mean():.3f} {UNIT} over {len(chosen)} runs (the method is "
        f"chosen by validation MAE); the file is the run of split "
        f"{int(best['split'])}, seed {int(best['seed'])} ({best['mae']:.3f} on its test crystals).",
    )
    return table
