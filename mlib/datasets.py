"""The study's data sets as crystal graphs: one call per data set, with counts of every step.

thermal = load_thermal("aflow")        # AFLOW AGL thermal expansion, AFLOW geometry
mp = load_mp("mp-cgcnn", limit=None)   # MP formation energy and band gap
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from mlib.data import aflow
from mlib.data import mp as mpdata
from mlib.data.skips import Skips
from mlib.data.thermal import (
    THERMAL_DATASETS,
    build_thermal,
    mp_formulas,
    summary_row,
)
from mlib.graphs.featurize import GraphSet, featurize
from mlib.graphs.neighbors import GraphSpec


@dataclass
class ThermalData:
    """A thermal-expansion data set: graphs, the steps that built it, and everything skipped."""

    graphs: GraphSet
    steps: pd.DataFrame
    skips: Skips
    frame: pd.DataFrame  # after dedup, before featurisation
    before_dedup: pd.DataFrame  # every entry with a structure, before the dedup by (space group, reduced formula)

    @property
    def label(self) -> str:
        """How tables name this data set: name and crystal count."""
        return self.graphs.label

    def summary(self) -> dict[str, object]:
        """Crystals by arity and target statistics of the graphs the models train on."""
        return summary_row(self.label, self.graphs.table)


def agl_records(source: str = "auto", strict: bool = False) -> tuple[list[aflow.AflowRecord], Skips]:
    """Parsed AGL records from the mirror or live AFLUX; unreadable entries are counted skips."""
    skips = Skips(strict=strict)
    return aflow.load_agl(source, skips), skips


def load_thermal(
    name: str = "aflow",
    source: str = "auto",
    spec: GraphSpec = GraphSpec(),
    workers: int = 1,
    strict: bool = False,
    records: list[aflow.AflowRecord] | None = None,
    limit: int | None = None,
) -> ThermalData:
    """A thermal-expansion data set as graphs (see :data:`THERMAL_DATASETS`); ``limit``: only the first N
    entries of the data set become graphs (a labelled subset, ``<name> (first N)``)."""
    if name not in THERMAL_DATASETS:
        raise ValueError(f"unknown thermal data set {name!r}; choose from {sorted(THERMAL_DATASETS)}")
    skips = Skips(strict=strict)
    if records is None:
        records, parse_skips = agl_records(source, strict)
        skips.extend(parse_skips)
    mp = mpdata.load_mp_cgcnn() if name == "aflow+mp-join" else None
    frame, steps, before = build_thermal(name, records, skips, mp)
    label = name
    if limit is not None and limit < len(frame):
        frame, label = frame.head(limit), f"{name} (first {limit:,})"
    graphs = featurize(frame, label, spec, workers=workers, strict=strict)
    skips.extend(graphs.skips)
    steps = pd.concat(
        [
            steps,
            pd.DataFrame(
                [
                    {"dataset": name, "step": "dropped: no graph", "count": len(graphs.skips), "note": "counted skips"},
                    {"dataset": name, "step": "crystal graphs", "count": len(graphs), "note": "the data set"},
                ]
            ),
        ],
        ignore_index=True,
    )
    return ThermalData(graphs, steps, skips, frame, before)


def load_mp(
    name: str = "mp-cgcnn",
    limit: int | None = None,
    spec: GraphSpec = GraphSpec(),
    workers: int = 1,
    strict: bool = False,
) -> GraphSet:
    """MP crystals with formation_energy_per_atom and band_gap as graphs (``limit``: first N only)."""
    loaders = {"mp-cgcnn": mpdata.load_mp_cgcnn, "mp.2018.6.1": mpdata.load_mp_2018}
    if name not in loaders:
        raise ValueError(f"unknown MP data set {name!r}; choose from {sorted(loaders)}")
    frame = loaders[name](limit=limit)
    frame["formula"] = mp_formulas(frame)
    frame = frame.rename(columns={"material_id": "id", "cif": "source"})
    label = name if limit is None else f"{name} (first {limit:,})"
    return featurize(frame, label, spec, workers=workers, strict=strict)


@dataclass
class ExperimentData:
    """The experimental formation enthalpies as graphs, with every id left out on the way and its reason."""

    graphs: GraphSet  # table: id, formula, dhf_expt_ev_per_atom, dft, residual, source, table, disputed, ...
    table: pd.DataFrame  # every id with a measured value (one row per MP id), before the join to structures
    skips: Skips  # no measured value, no mp-cgcnn structure, formula disagreeing with the structure, no graph


def expt_dhf_joined(source: str = "auto", skips: Skips | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """RxnNet's measured formation enthalpies (one row per MP id) and those joined to an ``mp-cgcnn`` structure
    whose composition agrees (before graphs are built); ids left out are counted in ``skips``."""
    from mlib.data import expt_dhf

    skips = skips if skips is not None else Skips()
    table = expt_dhf.load(source, skips=skips)
    crystals = mpdata.load_mp_cgcnn(ids=set(table["material_id"]))
    return table, expt_dhf.join_structures(table, crystals, skips)


def load_expt_dhf(
    spec: GraphSpec = GraphSpec(), workers: int = 1, limit: int | None = None, source: str = "auto"
) -> ExperimentData:
    """RxnNet's measured formation enthalpies joined to their ``mp-cgcnn`` structures by MP id, as graphs
    (``limit``: the first N joined crystals, a labelled subset). The name says the join: ``expt-dhf x mp-cgcnn``."""
    from mlib.data import expt_dhf

    skips = Skips()
    table, joined = expt_dhf_joined(source, skips)
    if limit is not None:
        joined = joined.head(limit)
    frame = joined.drop(columns=["idx"]).rename(columns={"material_id": "id"})
    name = f"{expt_dhf.LABEL} x mp-cgcnn" + (f" (first {limit:,})" if limit is not None else "")
    graphs = featurize(frame, name, spec, source="cif", workers=workers)
    for record in graphs.skips.records:
        skips.add(record)
    return ExperimentData(graphs, table, skips)
