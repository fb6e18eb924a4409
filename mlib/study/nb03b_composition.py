"""03b_composition: does crystal structure add anything over composition? CGCNN against composition-only models
on CrabNet's benchmark split (mapped onto AFLOW records) and on the study's own splits.

* CrabNet's split: its formulas matched to AFLOW entries (rule in :mod:`mlib.data.crabnet`); CGCNN trains on
  the matched train formulas (validation: the matched val formulas) with CrabNet's targets and AFLOW's
  geometry, and is tested on the matched test formulas, a labelled subset of CrabNet's test set.
* The study's splits: the 6:2:2 splits of 02_train (its CGCNN runs are reused when their keys match).
* The composition-only model (:mod:`mlib.composition`, Magpie + random forest) runs on both, over seeds;
  Roost's and CrabNet's published test MAE on CrabNet's full test set stand beside.

CGCNN runs are runs of the store, ``<store>/03b_composition/crabnet/seed<k>/`` and ``.../own/seed<k>/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from mlib import catalogue, composition, datasets, plots, published, store, store_paths
from mlib.catalogue import THERMAL_TARGET
from mlib.data import crabnet
from mlib.data.thermal import records_frame
from mlib.graphs.featurize import GraphSet, featurize
from mlib.graphs.neighbors import GraphSpec
from mlib.models.registry import graph_spec
from mlib.outputs import FALSE_DISCOVERY_RATE, Run, mean_std, results_of, with_verdicts
from mlib.params import CompositionParams, TrainConfig
from mlib.study.nb02_train import best_architecture
from mlib.training import FitJob, fit_jobs, regression_metrics, split_indices

NOTEBOOK = store_paths.COMPOSITION
MATCHED = "aflow ∩ CrabNet split"


def crabnet_split(P: CompositionParams, run: Run) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CrabNet's split and its rows matched to AFLOW entries; the mapping counts are saved as a table."""
    split = crabnet.load_split(P.source)
    records, _ = datasets.agl_records(P.source)
    matched, counts = crabnet.match_records(split, records_frame(records), P.tolerance)
    if P.limit is not None:  # the first formulas of each part, in the proportions of the split
        share = matched["part"].value_counts(normalize=True)
        keep = {part: max(1, round(P.limit * share.get(part, 0))) for part in crabnet.PARTS}
        matched = pd.concat([rows.head(keep[part]) for part, rows in matched.groupby("part")]).sort_index()
    total = counts.set_index("outcome")["all"]
    lost = total.drop("matched")
    run.save_table(
        counts,
        "crabnet_mapping",
        f"CrabNet's split ({len(split):,} formulas) matched to AFLOW AGL entries: same reduced formula, "
        f"label within {P.tolerance:.0%} of CrabNet's target, entry with geometry",
        finding=f"{total['matched']:,} of {int(total.sum()):,} formulas ({total['matched'] / total.sum():.0%}) have "
        f"an AFLOW entry with a structure and the same label; the largest loss is '{lost.idxmax()}' "
        f"({lost.max():,}). Every comparison on this split is on the matched subset unless a row says otherwise.",
    )
    return split, matched


def _matched_graphs(P: CompositionParams, matched: pd.DataFrame, model: str = "cgcnn") -> GraphSet:
    """The matched crystals as the graphs ``model`` reads (CGCNN's with the notebook's graph parameters)."""
    frame = matched.rename(columns={"target": THERMAL_TARGET})[
        ["id", "source", THERMAL_TARGET, "aflow_label", "part", "reduced_formula", "spacegroup", "nspecies"]
    ]
    spec = graph_spec(model)
    if spec.kind == "cgcnn":
        spec = GraphSpec(radius=P.radius, max_neighbors=P.max_neighbors, tie_order=P.tie_order)
    return featurize(frame, MATCHED if P.limit is None else f"{MATCHED} (first {P.limit:,})", spec, workers=P.workers)


def other_architecture(P: CompositionParams) -> tuple[str, float, int | None] | None:
    """02_train's other architecture of lowest validation MAE, its learning rate and patience (None: none, or
    ``best_architecture`` off)."""
    if not P.best_architecture:
        return None
    best = best_architecture(results_of(P, "02_train"))
    return None if best is None else (best[0], best[1], best[3])


def other_on_crabnet(P: CompositionParams, run: Run, matched: pd.DataFrame) -> pd.DataFrame | None:
    """02_train's best other architecture on the matched CrabNet split over ``seeds``, at 02's learning rate and
    patience: test metrics per seed (None: no such architecture)."""
    other = other_architecture(P)
    if other is None:
        return None
    model, lr, patience = other
    graphs = _matched_graphs(P, matched, model)
    parts = graphs.table["part"].to_numpy()
    split = {part: np.flatnonzero(parts == part) for part in crabnet.PARTS}
    jobs = [
        FitJob(
            model,
            {},
            TrainConfig(epochs=P.epochs, batch_size=P.batch_size, lr=lr, seed=seed, patience=patience),
            store_paths.composition_run(P.store_dir, "crabnet", seed, model),
            split=split,
        )
        for seed in P.seeds
    ]
    done = fit_jobs(graphs, THERMAL_TARGET, jobs, P.workers, f"{catalogue.model_display(model)} on CrabNet's split")
    table = pd.DataFrame([{"seed": seed, **r["metrics"]} for seed, r in zip(P.seeds, done)])
    info = catalogue.target(THERMAL_TARGET)
    name = catalogue.model_display(model)
    run.save_table(
        table,
        "other_crabnet_seeds",
        f"{name} (02_train's other architecture of lowest validation MAE; lr {lr:g}) on CrabNet's split (matched), "
        f"test metrics per seed: {graphs.label}: train {len(split['train']):,}, test {len(split['test']):,}",
        finding=f"Test R {mean_std(table['pearson_r'])}, MAE {mean_std(table['mae'] / info.scale)} {info.axis_unit} "
        f"over {len(table)} seeds; beside the published composition models below.",
    )
    return table


def _cgcnn(P: CompositionParams, seed: int, folder: Path, **kwargs) -> FitJob:
    """One CGCNN run with 02_train's defaults (its key equals 02's for the same crystals and split)."""
    config = TrainConfig(epochs=P.epochs, batch_size=P.batch_size, lr=P.lr, seed=seed)
    return FitJob("cgcnn", {"atom_features": P.atom_features}, config, folder, **kwargs)


def structure_on_crabnet(P: CompositionParams, run: Run, matched: pd.DataFrame) -> pd.DataFrame:
    """CGCNN (02_train's defaults) on the matched CrabNet split over ``seeds``: test metrics per seed."""
    graphs = _matched_graphs(P, matched)
    parts = graphs.table["part"].to_numpy()
    split = {part: np.flatnonzero(parts == part) for part in crabnet.PARTS}
    jobs = [_cgcnn(P, seed, store_paths.composition_run(P.store_dir, "crabnet", seed), split=split) for seed in P.seeds]
    done = fit_jobs(graphs, THERMAL_TARGET, jobs, P.workers, "CGCNN on CrabNet's split")
    table = pd.DataFrame([{"seed": seed, **r["metrics"]} for seed, r in zip(P.seeds, done)])
    where = f"{graphs.label}: train {len(split['train']):,}, val {len(split['val']):,}, test {len(split['test']):,}"
    info = catalogue.target(THERMAL_TARGET)
    run.save_table(
        table,
        "cgcnn_crabnet_seeds",
        f"CGCNN on CrabNet's split (matched), test metrics per seed: {where}",
        finding=f"Test R {mean_std(table['pearson_r'])}, MAE {mean_std(table['mae'] / info.scale)} {info.axis_unit} "
        f"over {len(table)} seeds on one fixed split: the spread is the seeds', not the splits'.",
    )
    return table.assign(crystals=len(graphs), train=len(split["train"]), test=len(split["test"]))


def composition_on_crabnet(P: CompositionParams, split: pd.DataFrame, matched: pd.DataFrame) -> pd.DataFrame:
    """Magpie + random forest on CrabNet's split: trained on all train formulas (the benchmark's protocol) and
    on the matched train formulas only (CGCNN's data); tested on the full and on the matched test set."""
    x = composition.magpie_features(list(split["formula"]))
    y = split["target"].to_numpy()
    is_train = (split["part"] == "train").to_numpy()
    is_test = (split["part"] == "test").to_numpy()
    matched_formulas = set(matched["formula"])
    in_matched = split["formula"].isin(matched_formulas).to_numpy()
    rows = []
    for seed in P.seeds:
        for trained_on, rows_train in (
            ("all train formulas", is_train),
            ("matched train formulas", is_train & in_matched),
        ):
            forest = composition.random_forest(x[rows_train], y[rows_train], seed, P.workers, P.trees)
            for tested_on, rows_test in (("full test set", is_test), ("matched test set", is_test & in_matched)):
                if trained_on == "matched train formulas" and tested_on == "full test set":
                    continue
                metrics = regression_metrics(y[rows_test], forest.predict(x[rows_test]))
                rows.append(
                    {
                        "seed": seed,
                        "trained on": trained_on,
                        "tested on": tested_on,
                        "train": int(rows_train.sum()),
                        "test": int(rows_test.sum()),
                        **metrics,
                    }
                )
    return pd.DataFrame(rows)


def composition_on_own_splits(P: CompositionParams) -> pd.DataFrame:
    """Magpie + random forest on the study's 6:2:2 splits of the thermal set (02_train's split of each seed)."""
    graphs = _thermal_set(P)
    table = graphs.table
    x = composition.magpie_features(list(table["reduced_formula"]))
    y = table[THERMAL_TARGET].to_numpy()
    rows = []
    for seed in P.own_seeds:
        split = split_indices(len(graphs), seed)
        forest = composition.random_forest(x[split["train"]], y[split["train"]], seed, P.workers, P.trees)
        metrics = regression_metrics(y[split["test"]], forest.predict(x[split["test"]]))
        rows.append({"seed": seed, "train": len(split["train"]), "test": len(split["test"]), **metrics})
    return pd.DataFrame(rows).assign(dataset=graphs.label)


def _thermal_set(P: CompositionParams) -> GraphSet:
    spec = GraphSpec(radius=P.radius, max_neighbors=P.max_neighbors, tie_order=P.tie_order)
    graphs = datasets.load_thermal(P.dataset, spec=spec, workers=P.workers).graphs
    return graphs.first(P.limit).with_finite(THERMAL_TARGET)


def versus_finding(table: pd.DataFrame, info: catalogue.Target) -> str:
    """What composition against structure shows, on each split: CGCNN's MAE beside the best composition-only one
    measured here on the same test crystals (published rows are on the full test set, not the same crystals)."""
    parts = []
    for split, rows in table.groupby("split", sort=False):
        ours = rows[~rows["model"].str.endswith("(published)")]
        cgcnn = ours[ours["input"] == "structure"]
        same = ours[(ours["input"] == "composition") & ours["test set"].isin(cgcnn["test set"])]
        if len(cgcnn) and len(same):
            best = same.loc[same["mae_mean"].idxmin()]
            c = cgcnn.iloc[0]
            parts.append(
                f"{split} split ({c['test set']} test crystals): CGCNN {c['mae_mean'] / info.scale:.3g} against "
                f"{best['model']} {best['mae_mean'] / info.scale:.3g} {info.axis_unit} (CGCNN's MAE "
                f"{c['mae_mean'] / best['mae_mean'] - 1:+.0%} against it)"
            )
    text = "; ".join(parts)
    return f"On the same test crystals: {text}." if text else ""


def structure_on_own_splits(P: CompositionParams, run: Run) -> pd.DataFrame:
    """CGCNN (02_train's defaults) on the study's 6:2:2 split of each of ``own_seeds``: 02_train's finished
    runs are read back when their keys match, other runs are trained here."""
    graphs = _thermal_set(P)
    jobs = [
        _cgcnn(
            P,
            seed,
            store_paths.composition_run(P.store_dir, "own", seed),
            reuse=[store_paths.thermal_model_file(P.store_dir, P.dataset, seed).parent],
        )
        for seed in P.own_seeds
    ]
    done = fit_jobs(graphs, THERMAL_TARGET, jobs, P.workers, "CGCNN on the study's splits")
    rows = [
        {"seed": seed, "train": r["train"], **r["metrics"], "test": r["test"]} for seed, r in zip(P.own_seeds, done)
    ]
    return pd.DataFrame(rows).assign(dataset=graphs.label)


def compare(
    P: CompositionParams, run: Run, split: pd.DataFrame, matched: pd.DataFrame, cgcnn_crabnet: pd.DataFrame
) -> pd.DataFrame:
    """One table and one figure: composition against structure on both splits, MAE and R as mean ± std."""
    info = catalogue.target(THERMAL_TARGET)
    own_cgcnn = structure_on_own_splits(P, run)
    forest_crabnet = composition_on_crabnet(P, split, matched)
    forest_own = composition_on_own_splits(P)
    own_label = f"{forest_own['dataset'].iloc[0]}, 6:2:2 splits of seeds {list(P.own_seeds)} (02_train's)"
    n_test_matched = int(cgcnn_crabnet["test"].iloc[0])

    def row(model: str, split_name: str, test: str, frame: pd.DataFrame, over: str) -> dict:
        return {
            "model": model,
            "input": "structure" if model.startswith("CGCNN") else "composition",
            "split": split_name,
            "test set": test,
            "runs": f"{len(frame)} {over}",
            f"mae ({info.axis_unit})": mean_std(frame["mae"] / info.scale, 3),
            "pearson_r": mean_std(frame["pearson_r"], 3),
            "mae_mean": float(frame["mae"].mean()),
            "mae_std": float(frame["mae"].std(ddof=1)) if len(frame) > 1 else 0.0,
        }

    forest = "Magpie + random forest"
    rows = [
        row("CGCNN", "CrabNet's", f"matched ({n_test_matched:,})", cgcnn_crabnet, "seeds"),
        row(
            f"{forest} (matched train)",
            "CrabNet's",
            f"matched ({n_test_matched:,})",
            forest_crabnet.query("`trained on` == 'matched train formulas'"),
            "seeds",
        ),
        row(
            forest,
            "CrabNet's",
            f"matched ({n_test_matched:,})",
            forest_crabnet.query("`trained on` == 'all train formulas' and `tested on` == 'matched test set'"),
            "seeds",
        ),
        row(
            forest,
            "CrabNet's",
            f"full ({int((split['part'] == 'test').sum()):,})",
            forest_crabnet.query("`tested on` == 'full test set'"),
            "seeds",
        ),
    ]
    for model, mae in published.COMPOSITION_ONLY_TEC.items():
        rows.append(
            {
                "model": f"{model} (published)",
                "input": "composition",
                "split": "CrabNet's",
                "test set": f"full ({int((split['part'] == 'test').sum()):,})",
                "runs": published.CRABNET_PAPER,
                f"mae ({info.axis_unit})": f"{mae / info.scale:.3g}",
                "pearson_r": "",
                "mae_mean": mae,
                "mae_std": 0.0,
            }
        )
    test_own = int(own_cgcnn["test"].iloc[0])
    rows += [
        row("CGCNN", "the study's", f"{test_own:,} per split", own_cgcnn, "splits"),
        row(forest, "the study's", f"{test_own:,} per split", forest_own, "splits"),
    ]
    table = pd.DataFrame(rows)
    shown = table.drop(columns=["mae_mean", "mae_std"])
    run.save_table(
        shown,
        "composition_vs_structure",
        f"Composition against structure, {info.display}: CrabNet's split matched to AFLOW ({len(matched):,} of "
        f"{len(split):,} formulas; a subset) and {own_label}",
        finding=versus_finding(table, info),
    )
    by_set = forest_crabnet.groupby("tested on", sort=False)["mae"].mean() / info.scale
    run.save_table(
        forest_crabnet,
        "forest_crabnet_seeds",
        f"Magpie + random forest on CrabNet's split, per seed ({len(split):,} formulas)",
        finding="Mean test MAE "
        + ", ".join(f"{mae:.3g} {info.axis_unit} on the {name}" for name, mae in by_set.items())
        + (
            f": for the same model the matched subset is {'easier' if by_set.iloc[1] < by_set.iloc[0] else 'harder'} "
            f"than the whole test set ({by_set.iloc[1] / by_set.iloc[0] - 1:+.0%} MAE), which is why models are "
            "compared on the same test crystals."
            if len(by_set) == 2
            else "."
        ),
    )
    run.save_figure(
        plots.composition_vs_structure(table, info),
        "composition_vs_structure",
        f"Test MAE of structure-based CGCNN and composition-only models, CrabNet's split (matched subset and full) "
        f"and {own_label}",
        finding=versus_finding(table, info),
    )
    return shown


def _test_predictions(folder: Path) -> pd.DataFrame:
    """A finished run's test predictions (``formula``: reduced formula, ``true``, ``pred``, 1/K)."""
    frame = store.read_csv(Path(folder) / "predictions.csv")
    return frame[frame["split"] == "test"]


def beside_published(P: CompositionParams, run: Run, matched: pd.DataFrame) -> pd.DataFrame:
    """Each structure model on CrabNet's split (CGCNN, and 02_train's best other architecture; their seeds' runs)
    against each published composition model on exactly the test formulas both predict (same label). Beyond seed
    noise means: the structure model's per-seed MAE on those formulas against the composition model's, a one-sample
    t-test over seeds (Benjamini-Hochberg over every pair; the published models are single runs, so their own seed
    noise is not counted); the Wilcoxon signed-rank test over formulas (the seed-mean absolute error against the
    model's) says how consistent the difference is from formula to formula."""
    info = catalogue.target(THERMAL_TARGET)
    structures = {"CGCNN": None}
    if (other := other_architecture(P)) is not None:
        structures[catalogue.model_display(other[0])] = other[0]
    published_runs = crabnet.load_published(P.source)
    unit = f"({info.axis_unit})"
    rows = []
    for name, model in structures.items():
        seeds = {
            seed: _test_predictions(store_paths.composition_run(P.store_dir, "crabnet", seed, model))
            for seed in P.seeds
        }
        errors = pd.DataFrame({seed: (f["pred"] - f["true"]).abs().to_numpy() for seed, f in seeds.items()})
        errors.index = next(iter(seeds.values()))["formula"].to_numpy()
        labels = next(iter(seeds.values())).set_index("formula")["true"]
        for composition_model, theirs in published_runs.groupby("model", sort=False):
            theirs = theirs.drop_duplicates("reduced_formula").set_index("reduced_formula")
            common = errors.index.intersection(theirs.index)
            common = common[np.isclose(theirs.loc[common, "actual"], labels.loc[common], rtol=1e-6)]
            ours, other_errors = (
                errors.loc[common],
                (theirs.loc[common, "predicted"] - theirs.loc[common, "actual"]).abs(),
            )
            per_seed = ours.mean(axis=0)
            rows.append(
                {
                    "structure model": name,
                    "composition model": f"{composition_model} (published)",
                    "common test formulas": len(common),
                    f"composition MAE {unit}": other_errors.mean() / info.scale,
                    f"structure MAE {unit}, mean ± std over seeds": mean_std(per_seed / info.scale, 3),
                    "structure seeds better": f"{int((per_seed < other_errors.mean()).sum())} of {len(per_seed)}",
                    "relative MAE gain of structure": float(1 - per_seed.mean() / other_errors.mean()),
                    "t-test p (seeds)": float(stats.ttest_1samp(per_seed, other_errors.mean()).pvalue)
                    if len(per_seed) >= 3
                    else float("nan"),
                    "Wilcoxon p (formulas)": float(stats.wilcoxon(ours.mean(axis=1), other_errors).pvalue),
                }
            )
    table = with_verdicts(
        pd.DataFrame(rows),
        "relative MAE gain of structure",
        "structure better",
        "structure worse",
        p="t-test p (seeds)",
    )
    train = int((matched["part"] == "train").sum())
    run.save_table(
        table,
        "beside_published",
        f"Structure models ({', '.join(structures)}; {len(P.seeds)} seeds each, trained on the {train:,} matched "
        f"training formulas) against the published test predictions of composition models "
        f"({published.CRABNET_PAPER}; trained on all of CrabNet's training formulas) on exactly the test formulas "
        "both predict with the same label; verdict: the structure model's per-seed MAE against the composition "
        f"model's (one-sample t-test, Benjamini-Hochberg q < {FALSE_DISCOVERY_RATE} over every pair)",
        finding="; ".join(
            f"{r['structure model']} against {r['composition model']}: {r['relative MAE gain of structure']:+.1%} "
            f"({r['verdict']}, {r['structure seeds better']} seeds better) on {r['common test formulas']} formulas"
            for _, r in table.iterrows()
        )
        + ".",
    )
    return table


def split_difficulty(P: CompositionParams, run: Run, matched: pd.DataFrame) -> pd.DataFrame:
    """Why CrabNet's split is easier than the study's, measured on each test set: the spread of its labels, the
    error of predicting the training mean, CGCNN's error relative to it, and how many test formulas (polymorphs
    of a training formula) also occur in training."""
    info = catalogue.target(THERMAL_TARGET)
    rows = []

    def row(name: str, folder: Path, train_formulas: set[str], labels_train: np.ndarray) -> dict[str, object]:
        test = _test_predictions(folder)
        baseline = np.abs(test["true"] - labels_train.mean()).mean()
        cgcnn = (test["pred"] - test["true"]).abs().mean()
        return {
            "test set": name,
            "test crystals": len(test),
            f"label std ({info.axis_unit})": test["true"].std() / info.scale,
            f"largest label ({info.axis_unit})": test["true"].max() / info.scale,
            f"MAE of the training mean ({info.axis_unit})": baseline / info.scale,
            f"CGCNN MAE ({info.axis_unit})": cgcnn / info.scale,
            "CGCNN MAE / training-mean MAE": cgcnn / baseline,
            "test formulas also in training": float(test["formula"].isin(train_formulas).mean()),
        }

    parts = matched.set_index("part")
    crab_train = parts.loc["train", "target"].to_numpy()
    crab_formulas = set(parts.loc["train", "reduced_formula"])
    for seed in P.seeds:
        rows.append(
            row(f"CrabNet's (matched), seed {seed}", store_paths.composition_run(P.store_dir, "crabnet", seed),
                crab_formulas, crab_train)
        )  # fmt: skip
    graphs = _thermal_set(P)
    for seed in P.own_seeds:
        folder = store_paths.composition_run(P.store_dir, "own", seed)  # else 02_train's run, read back for it
        if not (folder / store.RECORD).exists():
            folder = store_paths.thermal_model_file(P.store_dir, P.dataset, seed).parent
        ids = set(json.loads((folder / "split.json").read_text())["train"])
        train = graphs.table[graphs.table["id"].astype(str).isin(ids)]
        rows.append(
            row(
                f"the study's, split seed {seed}",
                folder,
                set(train["reduced_formula"]),
                train[THERMAL_TARGET].to_numpy(),
            )
        )
    table = pd.DataFrame(rows)
    crab, own = table[table["test set"].str.startswith("CrabNet")], table[table["test set"].str.startswith("the study")]
    ratio = "CGCNN MAE / training-mean MAE"
    run.save_table(
        table,
        "split_difficulty",
        f"What makes a test set easy, {info.display}: label spread, the error of predicting the training mean, CGCNN's "
        f"error relative to it, and test formulas that also occur in training; CrabNet's split (matched, one row per "
        f"formula, labels averaged over duplicate entries) and the study's 6:2:2 splits of {graphs.label}",
        finding=f"Relative to predicting the training mean, CGCNN's test MAE is {crab[ratio].mean():.3f} on CrabNet's "
        f"split and {own[ratio].mean():.3f} on the study's ({crab[ratio].mean() / own[ratio].mean() - 1:+.0%}), with "
        f"about the same label spread (std {crab.iloc[:, 2].mean():.3g} against {own.iloc[:, 2].mean():.3g} "
        f"{info.axis_unit}). None of CrabNet's test formulas occurs in its training set (one row per formula, labels "
        f"averaged over duplicates); {own['test formulas also in training'].mean():.0%} of the study's do (polymorphs "
        "with labels of their own). CrabNet's matched subset also drops the formulas whose AFLOW label moved by more "
        "than the tolerance since CrabNet's release (crabnet_mapping), and the same random forest is more accurate on "
        "it than on the full test set (forest_crabnet_seeds): part of the gap is which formulas the matched split "
        "keeps, not the model.",
    )
    return table
