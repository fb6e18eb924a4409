"""01_data: every data set of the study, how many crystals each step keeps, and why the others went."""

from __future__ import annotations

import pandas as pd

from mlib import catalogue, datasets, plots, published
from mlib.catalogue import THERMAL_TARGET
from mlib.data import aflow
from mlib.data.reference import reference_atom_init
from mlib.data.thermal import arity_counts, drop_duplicates, dropped_duplicates, index_frame, target_stats
from mlib.graphs.atom_features import agreement_with_reference
from mlib.graphs.featurize import GraphSet
from mlib.graphs.neighbors import GraphSpec
from mlib.outputs import Run
from mlib.params import DataParams


def spec(P: DataParams) -> GraphSpec:
    """The crystal graphs of this run (CGCNN conventions unless the parameters change them)."""
    return GraphSpec(radius=P.radius, max_neighbors=P.max_neighbors, tie_order=P.tie_order)


def agl_index_table(source: str = "auto") -> pd.DataFrame:
    """The study's AGL auids by arity and after dedup, beside the paper's counts (mirror or live AFLUX)."""
    where = aflow.resolve_source(source)
    index = index_frame(aflow.read_index(where))
    row = {
        "dataset": f"AGL index ({where}, {len(index):,} auids of the study)",
        "entries": len(index),
        **arity_counts(index["nspecies"]),
        "after dedup": len(drop_duplicates(index)),
    }
    return pd.DataFrame([row, published.AGL_DATASET])


def agl_index(P: DataParams, run: Run) -> pd.DataFrame:
    """:func:`agl_index_table`, saved."""
    table = agl_index_table(P.aflow_source)
    where = aflow.resolve_source(P.aflow_source)
    caption = (
        f"AFLOW AGL index ({where}, {table.loc[0, 'entries']:,} entries) by arity and after dedup, beside the paper"
    )
    ours, paper = table.iloc[0], table.iloc[1]
    same = all(ours[c] == paper[c] for c in ("entries", "unary", "binary", "ternary"))
    finding = (
        f"The index holds {ours['entries']:,} auids ({ours['unary']} unary, {ours['binary']:,} binary, "
        f"{ours['ternary']:,} ternary), {'the same counts as' if same else 'unlike'} the paper's; dedup by (space "
        f"group, reduced formula) keeps {ours['after dedup']:,} where the paper reports {paper['after dedup']:,} "
        f"({ours['after dedup'] - paper['after dedup']:+,}): the index has no geometry, so this count is of auids, "
        "before the entries without a structure are dropped (see the steps below)."
    )
    return run.save_table(table, "agl_index_counts", caption, finding=finding)


def labels(P: DataParams, run: Run) -> tuple[list, str]:
    """The AGL records (mirror or live), their target statistics beside the paper's, and a histogram."""
    source = aflow.resolve_source(P.aflow_source)
    records, parse_skips = datasets.agl_records(source, P.strict)
    values = pd.Series([r.target for r in records], name=THERMAL_TARGET)
    where = f"AGL records ({source}, {len(records):,} entries)"
    stats = pd.DataFrame(
        [{"dataset": where, **target_stats(values), "skipped": len(parse_skips)}, published.AGL_TARGET_STATS]
    )
    info, paper = catalogue.target(THERMAL_TARGET), published.AGL_TARGET_STATS
    run.save_table(
        stats,
        "target_stats",
        f"Thermal expansion at 300 K (1/K): {where} vs the paper",
        finding=f"{len(records):,} labelled entries ({len(parse_skips)} unparsable, counted) range from "
        f"{values.min() / info.scale:.3g} to {values.max() / info.scale:.4g} {info.axis_unit} (the paper: "
        f"{paper['min'] / info.scale:.3g} to {paper['max'] / info.scale:.4g}), mean {values.mean() / info.scale:.3g} "
        f"(paper {paper['mean'] / info.scale:.3g}); {int((values < 0).sum())} negative.",
    )
    fig = plots.target_histogram(values, info, f"AFLOW AGL, {len(records):,} entries ({source})")
    above = values > 3 * values.median()
    run.save_figure(
        fig,
        "target_histogram",
        f"Thermal expansion of {len(records):,} AGL entries, log-scale inset",
        finding=f"The labels are skewed to the right: median {values.median() / info.scale:.3g} {info.axis_unit}, "
        f"and {int(above.sum())} entries ({above.mean():.1%}) above three times the median make the long tail that "
        "dominates a squared-error loss and Pearson R.",
    )
    return records, source


def step_losses(steps: pd.DataFrame) -> str:
    """The entries one data set's steps lose, by reason: each ``dropped:`` step and the dedup's duplicates."""
    count = dict(zip(steps["step"], steps["count"]))
    lost = {step.removeprefix("dropped: "): n for step, n in count.items() if step.startswith("dropped") and n}
    before = next((n for step, n in count.items() if step.startswith("before dedup")), None)
    if before is not None and "after dedup" in count and before > count["after dedup"]:
        lost["duplicates (dedup)"] = before - count["after dedup"]
    return ", ".join(f"{n:,} {why}" for why, n in lost.items()) or "none lost"


def thermal_sets(P: DataParams, run: Run, records: list, source: str) -> dict[str, datasets.ThermalData]:
    """Each thermal-expansion data set as crystal graphs: steps, arity, skipped entries by reason."""
    thermal = {
        name: datasets.load_thermal(name, source, spec(P), P.workers, P.strict, records) for name in P.thermal_datasets
    }
    steps = pd.concat([t.steps for t in thermal.values()], ignore_index=True)
    finding = (
        "; ".join(
            f"{name}: {int(group['count'].iloc[0]):,} labelled entries -> {int(group['count'].iloc[-1]):,} crystal "
            f"graphs ({step_losses(group)})"
            for name, group in steps.groupby("dataset", sort=False)
        )
        + "."
    )
    run.save_table(
        steps, "thermal_steps", "Thermal-expansion data sets, step by step (entries kept at each step)", finding=finding
    )
    run.save_figure(
        plots.count_steps(steps), "thermal_steps", "Entries kept at each step of each thermal data set", finding=finding
    )
    summary = pd.DataFrame([t.summary() for t in thermal.values()])
    run.save_table(
        summary,
        "thermal_datasets",
        "Thermal-expansion data sets used for training (crystal graphs)",
        finding="; ".join(
            f"{name}: {len(t.graphs):,} crystal graphs from {int(t.steps['count'].iloc[0]):,} labelled AGL entries "
            f"({len(t.skips):,} skipped with their reason, {len(t.before_dedup) - len(t.frame):,} dropped as duplicates)"
            for name, t in thermal.items()
        )
        + f" (the paper: {published.AGL_DATASET['after dedup']:,} compounds after its dedup).",
    )
    arity = {name: t.frame["nspecies"].value_counts(normalize=True) for name, t in thermal.items()}
    run.save_figure(
        plots.arity_bars(summary),
        "thermal_arity",
        "Crystals by number of elements in each thermal data set",
        finding="; ".join(
            f"{name}: {share.get(2, 0):.0%} binary, {share.get(3, 0):.0%} ternary, {share.get(1, 0):.0%} unary"
            for name, share in arity.items()
        )
        + ": the study learns mostly from binary and ternary compounds.",
    )
    skipped = pd.concat([t.skips.table().assign(dataset=name) for name, t in thermal.items()], ignore_index=True)
    reasons = pd.concat([t.skips.summary().assign(dataset=name) for name, t in thermal.items()], ignore_index=True)
    finding = (
        "; ".join(
            f"{name}: {int(group['count'].sum()):,} skipped ("
            + ", ".join(f"{r['count']:,} {r['kind']}" for _, r in group.iterrows())
            + ")"
            for name, group in reasons.groupby("dataset", sort=False)
        )
        + ". None is dropped silently: each entry and its reason is in skipped_entries.csv."
    )
    run.save_table(
        skipped,
        "skipped_entries",
        f"Every skipped entry with its reason ({len(skipped):,} rows)",
        markdown=False,
        finding=finding,
    )
    run.save_table(
        reasons, "skip_reasons", "Skipped entries by stage and reason, per thermal data set", finding=finding
    )
    return thermal


def dedup_polymorphs(run: Run, thermal: dict[str, datasets.ThermalData]) -> pd.DataFrame:
    """How many entries the paper's dedup by (space group, reduced formula) drops, and how many of those are
    structurally distinct crystals (polymorphs, polytypes, other orderings) rather than repeats of the kept
    entry; the distinct ones are listed. The study keeps the paper's rule (every thermal run depends on it)."""
    info = catalogue.target(THERMAL_TARGET)
    dropped = pd.concat(
        [dropped_duplicates(t.before_dedup).assign(dataset=name) for name, t in thermal.items()], ignore_index=True
    )
    summary = (
        dropped.groupby("dataset", sort=False)["same structure"]
        .agg(dropped="size", repeats="sum")
        .assign(**{"distinct structures": lambda d: d["dropped"] - d["repeats"]})
        .reset_index()
    )
    summary.insert(1, "entries before dedup", [len(thermal[name].before_dedup) for name in summary["dataset"]])
    rows = summary.to_dict("records")
    run.save_table(
        summary,
        "dedup_polymorphs",
        "Entries dropped by the paper's dedup (space group, reduced formula), per thermal data set: repeats of the "
        "kept entry's structure, and structurally distinct crystals (pymatgen's StructureMatcher) that the rule "
        "takes for one compound",
        finding="; ".join(
            f"{r['dataset']}: of {r['dropped']} entries dropped, {r['repeats']} repeat the kept structure and "
            f"{r['distinct structures']} are other crystals the data set loses"
            for r in rows
        )
        + ". The kept entry of such a pair is whichever AFLOW lists first, so a polymorph a user asks about may be "
        "missing (02_train's known compounds say where).",
    )
    distinct = dropped[~dropped["same structure"]].drop(columns="same structure")
    for column in (f"kept {THERMAL_TARGET}", f"dropped {THERMAL_TARGET}"):
        distinct[column] = distinct[column] / info.scale
    distinct = distinct.rename(
        columns={
            f"kept {THERMAL_TARGET}": f"kept label ({info.axis_unit})",
            f"dropped {THERMAL_TARGET}": f"dropped label ({info.axis_unit})",
        }
    )
    gap = (distinct[f"kept label ({info.axis_unit})"] - distinct[f"dropped label ({info.axis_unit})"]).abs()
    run.save_table(
        distinct,
        "dedup_distinct",
        f"Every structurally distinct entry the dedup drops ({len(distinct):,} rows), beside the entry kept for its "
        f"space group and reduced formula, with both labels ({info.display})",
        finding=f"The kept and dropped labels of these {len(distinct)} pairs differ by a median "
        f"{gap.median():.3g} {info.axis_unit} (at most {gap.max():.3g}): the rule merges crystals whose thermal "
        "expansion is not the same."
        if len(distinct)
        else "The dedup drops no structurally distinct crystal.",
    )
    return summary


def graph_row(graphs: GraphSet) -> dict[str, float | int | str]:
    """Size of a graph set: crystals, atoms and edges per crystal, neighbours per atom."""
    atoms = pd.Series([g.num_nodes() for g in graphs.graphs])
    edges = pd.Series([g.num_edges() for g in graphs.graphs])
    return {
        "dataset": graphs.name,
        "crystals": len(graphs),
        "skipped": len(graphs.skips),
        "atoms/crystal (mean)": atoms.mean(),
        "atoms/crystal (max)": int(atoms.max()),
        "edges/atom (mean)": edges.sum() / atoms.sum(),
        "from cache": graphs.from_cache,
    }


def mp_set(P: DataParams, run: Run, thermal: dict[str, datasets.ThermalData]) -> pd.DataFrame:
    """The MP crystals as graphs, the size of every graph set, and histograms of the MP targets."""
    mp = datasets.load_mp("mp-cgcnn", P.mp_limit, spec(P), P.workers, P.strict)
    table = pd.DataFrame([graph_row(t.graphs) for t in thermal.values()] + [graph_row(mp)])
    run.save_table(
        table,
        "graph_summary",
        f"Crystal graphs ({P.radius:g} A, {P.max_neighbors} nearest neighbours) of every data set",
        finding="; ".join(
            f"{r['dataset']}: {r['crystals']:,} crystals of {r['atoms/crystal (mean)']:.1f} atoms on average "
            f"(at most {r['atoms/crystal (max)']}), {r['edges/atom (mean)']:.1f} edges per atom"
            for _, r in table.iterrows()
        )
        + f". Every atom has {P.max_neighbors} neighbours where {P.radius:g} A holds that many: the graphs are as "
        "dense in every data set.",
    )
    for name in catalogue.MP_TARGETS:
        info, values = catalogue.target(name), mp.table[name].dropna()
        fig = plots.target_histogram(values, info, f"{mp.label}")
        run.save_figure(
            fig,
            f"mp_{name}",
            f"{info.display} of {mp.label}",
            finding=f"{len(values):,} crystals from {values.min():.3g} to {values.max():.3g} {info.unit}, median "
            f"{values.median():.3g}"
            + (f"; {(values == 0).mean():.0%} are exactly 0 (metals)" if name == "band_gap" else "")
            + ".",
        )
    return table


def atom_features(P: DataParams, run: Run) -> pd.DataFrame:
    """Per property, the fraction of elements whose one-hot bin matches the reference ``atom_init.json``."""
    agreement = pd.DataFrame(agreement_with_reference(reference_atom_init(P.aflow_source)))
    single = agreement[~agreement["property"].str.startswith("all")]
    exact = single[single["agreement"] == 1]["property"].tolist()
    lowest = single.sort_values("agreement").iloc[0]
    whole = agreement[agreement["property"].str.startswith("all")]["agreement"]
    finding = (
        f"{len(exact)} of {len(single)} properties bin every element as the reference does ({', '.join(exact)}); "
        f"the lowest, {lowest['property']}, agrees for {lowest['agreement']:.0%} of elements (its source values "
        "differ from the reference's)"
        + (f"; all features agree for {whole.iloc[0]:.0%} of elements" if len(whole) else "")
        + ". Runs use the reference table unless atom_features says otherwise."
    )
    run.save_table(
        agreement,
        "atom_feature_agreement",
        f"Atom features (pymatgen) vs reference atom_init.json, elements 1-{catalogue.MAX_Z}",
        finding=finding,
    )
    run.save_figure(
        plots.agreement_bars(agreement),
        "atom_feature_agreement",
        "Agreement of atom features with atom_init.json",
        finding=finding,
    )
    return agreement
