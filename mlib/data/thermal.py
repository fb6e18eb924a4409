"""The thermal-expansion data sets of the study, their statistics, and the AFLOW x MP join.

``aflow``          AFLOW's own relaxed structures (live: every entry; mirror: those with a lattice).
``aflow+mp-join``  the ``aflow`` entries plus, for entries without AFLOW geometry, the MP structure
                   of ``mp-cgcnn`` with the same reduced formula (AFLOW's space group picks among
                   MP polymorphs). A cross-database join: MP's PBE relaxations, AFLOW's labels.

Each builder returns the data set as a frame (``id``, ``source`` structure, ``target``, metadata)
and a table of steps with counts, so every entry that is dropped is counted with its reason.
"""

from __future__ import annotations

import re
import warnings
from functools import cache

import pandas as pd

from mlib.catalogue import THERMAL_DATASETS, THERMAL_TARGET
from mlib.data.aflow import AflowRecord
from mlib.data.errors import BadEntry
from mlib.data.skips import Skips
from mlib.progress import track

TARGET = THERMAL_TARGET
ARITY = {1: "unary", 2: "binary", 3: "ternary"}
_FORMULA_SUM = re.compile(r"_chemical_formula_sum\s+'?([^'\n]+)'?")


@cache
def reduced_formula(formula: str) -> str:
    """Reduced formula of any formula pymatgen reads (``"Bi4"`` -> ``"Bi"``, ``"Ba1 Te1"`` -> ``"BaTe"``)."""
    from pymatgen.core import Composition

    with warnings.catch_warnings():  # pymatgen warns about noble gases' missing electronegativity
        warnings.simplefilter("ignore")
        return Composition(formula).reduced_formula


def arity_counts(nspecies: pd.Series) -> dict[str, int]:
    """Entries by number of elements: unary, binary, ternary (and more, if any)."""
    counts = nspecies.astype(int).value_counts().sort_index()
    return {ARITY.get(k, f"{k}-ary"): int(v) for k, v in counts.items()}


DEDUP_KEY = ["spacegroup", "reduced_formula"]  # the paper's: entries sharing both count as one compound


def drop_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep the first entry of each (space group, reduced formula), as the paper does."""
    return frame.drop_duplicates(subset=DEDUP_KEY, keep="first").reset_index(drop=True)


def same_structure(a, b) -> bool:
    """Whether two structures are one polymorph: pymatgen's StructureMatcher at its defaults (lattice 20 %,
    sites 0.3 of the mean free length, angles 5 degrees, volumes scaled to each other, so an experimental
    lattice matches a DFT relaxation of the same structure)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    from mlib.graphs.neighbors import to_structure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(StructureMatcher().fit(to_structure(a), to_structure(b)))


def structure_matches(structure, before: pd.DataFrame) -> pd.DataFrame:
    """The entries of ``before`` (a data set before its dedup) that are ``structure``'s polymorph: same reduced
    formula and :func:`same_structure`, in the data set's order."""
    from mlib.graphs.neighbors import to_structure

    structure = to_structure(structure)  # parsed once, matched against every candidate
    candidates = before[before["reduced_formula"] == structure.composition.reduced_formula]
    return candidates[[same_structure(structure, source) for source in candidates["source"]]]


def dropped_duplicates(before: pd.DataFrame) -> pd.DataFrame:
    """Every entry the paper's dedup drops, beside the entry it keeps for the same (space group, reduced formula):
    ``same structure`` says whether the two are one polymorph (:func:`same_structure`) or structurally distinct
    crystals that the dedup key takes for one compound."""
    kept = drop_duplicates(before).set_index(DEDUP_KEY)
    dropped = before[before.duplicated(subset=DEDUP_KEY, keep="first")]
    rows = []
    for entry in track(list(dropped.itertuples(index=False)), len(dropped), "dropped duplicates", unit="entry"):
        first = kept.loc[(entry.spacegroup, entry.reduced_formula)]
        rows.append(
            {
                "spacegroup": entry.spacegroup,
                "reduced_formula": entry.reduced_formula,
                "kept": first["id"],
                "dropped": entry.id,
                "same structure": same_structure(first["source"], entry.source),
                f"kept {TARGET}": first[TARGET],
                f"dropped {TARGET}": getattr(entry, TARGET),
            }
        )
    columns = [
        "spacegroup",
        "reduced_formula",
        "kept",
        "dropped",
        "same structure",
        f"kept {TARGET}",
        f"dropped {TARGET}",
    ]
    return pd.DataFrame(rows, columns=columns)


def duplicate_spread(frame: pd.DataFrame) -> dict[str, float | int]:
    """How far apart the labels of entries that count as one compound (same space group and reduced formula,
    the paper's dedup key) lie: a floor no model that sees one compound per key can beat on those entries.

    ``mad``: mean absolute deviation of an entry from its group's mean (1/K); ``pair``: mean absolute
    difference of two entries of a group.
    """
    groups = frame.groupby(DEDUP_KEY)[TARGET]
    sizes = groups.transform("size")
    multi = frame[sizes > 1]
    deviation = (multi[TARGET] - groups.transform("mean")[sizes > 1]).abs()
    pairs = [
        abs(a - b)
        for _, values in multi.groupby(DEDUP_KEY)[TARGET]
        for i, a in enumerate(values)
        for b in list(values)[i + 1 :]
    ]
    return {
        "entries": len(frame),
        "groups with several entries": int(multi.groupby(DEDUP_KEY).ngroups),
        "their entries": len(multi),
        "mad": float(deviation.mean()) if len(multi) else float("nan"),
        "pair": float(sum(pairs) / len(pairs)) if pairs else float("nan"),
    }


def target_stats(values: pd.Series) -> dict[str, float]:
    """Minimum, maximum, mean, median and the number of negative values of a target."""
    return {
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "median": float(values.median()),
        "negative": int((values < 0).sum()),
    }


def index_frame(entries: list[dict]) -> pd.DataFrame:
    """The AGL index (AFLUX format: strings) as a typed frame with reduced formulas."""
    frame = pd.DataFrame(entries)
    frame["nspecies"] = frame["nspecies"].astype(int)
    frame["spacegroup"] = frame["spacegroup_relax"].astype(int)
    frame["reduced_formula"] = frame["compound"].map(reduced_formula)
    return frame


def records_frame(records: list[AflowRecord]) -> pd.DataFrame:
    """Parsed AGL records as a frame: one row each, structures as lattice/species/coords dicts."""
    rows = []
    for r in records:
        rows.append(
            {
                "id": r.auid,
                "compound": r.compound,
                "reduced_formula": reduced_formula(r.compound),
                "nspecies": r.nspecies,
                "spacegroup": r.spacegroup,
                TARGET: r.target,
                "structure_source": "aflow" if r.has_geometry else None,
                "source": {"lattice": r.lattice, "species": r.species, "frac_coords": r.frac_coords}
                if r.has_geometry
                else None,
            }
        )
    return pd.DataFrame(rows)


def mp_formulas(mp: pd.DataFrame) -> pd.Series:
    """Reduced formula of each MP CIF, read from its ``_chemical_formula_sum`` line."""

    def formula(cif: str) -> str | None:
        match = _FORMULA_SUM.search(cif)
        return reduced_formula(match.group(1)) if match else None

    return mp["cif"].map(formula)


def spacegroup_of(cif: str, symprec: float = 0.1) -> int | None:
    """International space-group number of a CIF structure (spglib through pymatgen)."""
    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return SpacegroupAnalyzer(Structure.from_str(cif, fmt="cif"), symprec=symprec).get_space_group_number()
        except Exception:
            return None


def join_mp(labels: pd.DataFrame, mp: pd.DataFrame, skips: Skips) -> tuple[pd.DataFrame, dict[str, int]]:
    """MP structures for AFLOW labels by reduced formula; AFLOW's space group picks the polymorph.

    One MP polymorph: taken. Several: the ones with AFLOW's space group; among those the lowest
    formation energy. Labels with no MP formula, or no polymorph of AFLOW's space group, are
    counted skips.
    """
    mp = mp.assign(reduced_formula=mp_formulas(mp))
    by_formula = {f: g for f, g in mp.groupby("reduced_formula")}
    rows, counts = [], {"formula in MP": 0, "single MP polymorph": 0, "polymorph chosen by space group": 0}
    for label in track(labels.itertuples(index=False), len(labels), "join AFLOW x MP", unit="entry"):
        candidates = by_formula.get(label.reduced_formula)
        if candidates is None:
            skips.add(
                BadEntry(
                    label.id, f"formula {label.reduced_formula} not in mp-cgcnn", "join", "formula not in mp-cgcnn"
                )
            )
            continue
        counts["formula in MP"] += 1
        if len(candidates) == 1:
            chosen = candidates.iloc[0]
            counts["single MP polymorph"] += 1
        else:
            groups = candidates["cif"].map(spacegroup_of)
            matching = candidates[groups == label.spacegroup]
            if matching.empty:
                skips.add(
                    BadEntry(
                        label.id,
                        f"{len(candidates)} MP polymorphs of {label.reduced_formula}, "
                        f"none in AFLOW's space group {label.spacegroup}",
                        "join",
                        "no MP polymorph in AFLOW's space group",
                    )
                )
                continue
            chosen = matching.sort_values("formation_energy_per_atom").iloc[0]
            counts["polymorph chosen by space group"] += 1
        rows.append(
            {**label._asdict(), "structure_source": "mp-join", "mp_id": chosen["material_id"], "source": chosen["cif"]}
        )
    return pd.DataFrame(rows, columns=[*labels.columns, "mp_id", "source"]), counts


def build_thermal(
    name: str, records: list[AflowRecord], skips: Skips, mp: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A thermal-expansion data set (see module doc), its steps table (step, count, note) and the entries
    before the dedup (what :func:`dropped_duplicates` and structure matches look among)."""
    if name not in THERMAL_DATASETS:
        raise ValueError(f"unknown thermal data set {name!r}; choose from {sorted(THERMAL_DATASETS)}")
    frame = records_frame(records)
    has_geometry = frame["source"].notna()
    steps = [
        ("AGL labels (parsed, finite target)", len(frame), ""),
        ("with AFLOW geometry", int(has_geometry.sum()), ""),
    ]
    parts = [frame[has_geometry]]
    missing = frame[~has_geometry].drop(columns=["source"])
    if name == "aflow":
        for auid in missing["id"]:
            skips.add(BadEntry(auid, "no geometry in source (lattice missing)", "geometry", "no geometry"))
        steps.append(("dropped: no geometry", len(missing), "counted skips"))
    else:
        if mp is None:
            raise ValueError("aflow+mp-join needs the mp-cgcnn frame")
        joined, counts = join_mp(missing, mp, skips)
        steps += [
            ("without AFLOW geometry", len(missing), "to join with MP"),
            *((k, v, "") for k, v in counts.items()),
            ("joined MP structures", len(joined), "cross-database join"),
            ("dropped: no MP match", len(missing) - len(joined), "counted skips"),
        ]
        parts.append(joined)
    data = pd.concat(parts, ignore_index=True)
    deduped = drop_duplicates(data)
    steps += [
        ("before dedup (space group, reduced formula)", len(data), ""),
        ("after dedup", len(deduped), f"{len(data) - len(deduped)} duplicates removed"),
    ]
    table = pd.DataFrame(steps, columns=["step", "count", "note"])
    table.insert(0, "dataset", name)
    return deduped, table, data


def summary_row(name: str, frame: pd.DataFrame) -> dict[str, object]:
    """Counts by arity and target statistics of a data set, one table row."""
    return {"dataset": name, "crystals": len(frame), **arity_counts(frame["nspecies"]), **target_stats(frame[TARGET])}
