"""Measured formation enthalpies at 298 K (eV/atom) keyed by Materials Project id, from rasmusfr/RxnNet.

The values are the NBS tables' (Wagman et al., J. Phys. Chem. Ref. Data 11, suppl. 2 (1982)) and
NIST-JANAF's, as tabulated by RxnNet (MIT) at a pinned commit in six pickled pandas tables. They are read
either from the data mirror (``expt-dhf/raw/``) or downloaded from that commit, checked by SHA-256 in both
cases, and unpickled by :class:`TableUnpickler`, which builds only pandas and numpy objects: loading a file
never runs code from it.

One row per MP id (:func:`experimental_table`): the first table holding a measured value for the id, in the
order of :data:`TABLES`; ``disputed`` marks the two tables of compounds whose NBS value disagrees with
Wang et al. (Sci. Rep. 11, 15496 (2021)) or the literature. Rows without a measured value are counted skips.
:func:`join_structures` joins the ids to ``mp-cgcnn`` crystals (a cross-database join: every id without a
structure, or whose formula disagrees with its structure's, is a counted skip with its reason).
"""

from __future__ import annotations

import gzip
import io
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlib.data import aflow
from mlib.data.download import fetch
from mlib.data.errors import BadEntry, ChecksumError
from mlib.data.mirror import checked_mirror_file
from mlib.data.skips import Skips
from mlib.paths import cache_dir

COMMIT = "518a9fb8d0f781a3e2755b4f2580348910d1de75"
URL = f"https://raw.githubusercontent.com/rasmusfr/RxnNet/{COMMIT}/rxnnet/data/{{path}}"
MIRROR = "expt-dhf/raw/{name}.pkl.gz"
LABEL = "expt-dhf"  # the data set's name in tables and captions
UNIT = "eV/atom"


@dataclass(frozen=True)
class Table:
    """One of RxnNet's tables: where it lives, its digest, the column with the measured value, its source."""

    name: str
    path: str  # below rxnnet/data/ at COMMIT
    sha256: str
    column: str
    source: str  # nbs | janaf
    disputed: bool


TABLES = (
    Table(
        "main",
        "database-20.03.24/datasets/main.pkl.gz",
        "7644ff47c7ae7718b40593905d05b34272c77a89028212b3afa0b354c6fec1c5",
        "hf_ref",
        "nbs",
        False,
    ),
    Table(
        "intermetallics",
        "database-20.03.24/datasets/intermetallics.pkl.gz",
        "92432dd692945f27bd17a72e087a3d2ee79424d9723a3d6aaeb75171da266d2f",
        "hf_ref",
        "nbs",
        False,
    ),
    Table(
        "111124_nbs",
        "database-18.11.24/nbs/datasets/111124_nbs.pkl.gz",
        "73c79dec1d59cff65492f2aca12d0b480b4b047614b105fc861bb1f3d424d31e",
        "dfH(298)_nbs",
        "nbs",
        False,
    ),
    Table(
        "041124_janaf",
        "database-18.11.24/janaf/datasets/041124_janaf.pkl.gz",
        "826216ac492740cf954b85e9fcc8cf53213b8ffaf04c754d411135ad6b85e69d",
        "dfH(298)_janaf",
        "janaf",
        False,
    ),
    Table(
        "wang_disag",
        "database-20.03.24/datasets/wang_disag.pkl.gz",
        "7e29a08a69ec3dead6e8d1e53c4772a153092b87c6716468205afdf15f1daa13",
        "hf_ref",
        "nbs",
        True,
    ),
    Table(
        "lit_disag",
        "database-20.03.24/datasets/lit_disag.pkl.gz",
        "81012687213d517797a0e0a4bcaef21be0d9f8be49b398c8d431e2e9eaf2fa90",
        "hf_ref",
        "nbs",
        True,
    ),
)
TEMPERATURE = 298.15  # K: the key of the per-temperature values of the NBS and JANAF tables
COLUMNS = [
    "material_id",
    "formula",
    "dhf_expt_ev_per_atom",
    "source",
    "table",
    "disputed",
    "organic",
    "chemistry_type",
    "hf_wang_ev_per_atom",
]

# What a table may build: pandas frames and indexes, numpy arrays and scalars, slices. Nothing else is
# imported; pymatgen's Composition and Element (a column the study does not read) become inert records.
ALLOWED = {
    ("pandas.core.frame", "DataFrame"),
    ("pandas.core.internals.managers", "BlockManager"),
    ("pandas._libs.internals", "_unpickle_block"),
    ("pandas.core.indexes.base", "_new_Index"),
    ("pandas.core.indexes.base", "Index"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("builtins", "slice"),
}
INERT = {("pymatgen.core.composition", "Composition"), ("pymatgen.core.periodic_table", "Element")}


class BadTable(ValueError):
    """A file that is not one of RxnNet's pandas tables as expected."""


class UnsafePickle(BadTable):
    """A pickled table names something other than pandas and numpy data classes."""


class Inert:
    """What a pymatgen object of a table becomes: its arguments and state, kept as data, never executed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state


class TableUnpickler(pickle.Unpickler):
    """An unpickler that builds only :data:`ALLOWED` classes (and :class:`Inert` for :data:`INERT`)."""

    def __init__(self, file: io.BufferedIOBase, name: str) -> None:
        super().__init__(file)
        self.name = name

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED:
            if module.startswith("numpy.core."):  # numpy 2 moved its internals; the pickles name the old place
                module = module.replace("numpy.core.", "numpy._core.", 1)
            return super().find_class(module, name)
        if (module, name) in INERT:
            return type(name, (Inert,), {})
        raise UnsafePickle(
            f"{self.name}: the pickle asks for {module}.{name}, which is not a pandas or numpy data class; "
            "refusing to load it (a pickle can run code)"
        )


def read_table(path: Path, name: str | None = None) -> pd.DataFrame:
    """One gzipped pickled pandas table, unpickled by :class:`TableUnpickler` (``name``: how errors name it)."""
    name = name or str(path)
    try:
        with gzip.open(path) as stream:
            frame = TableUnpickler(stream, name).load()
    except UnsafePickle:
        raise
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as exc:
        raise BadTable(f"{name}: not a readable gzipped pickle of a pandas table ({exc})") from exc
    if not isinstance(frame, pd.DataFrame):
        raise BadTable(f"{name}: holds a {type(frame).__name__}, not a pandas table")
    return frame


def table_path(table: Table, source: str = "auto", url: str = URL) -> Path:
    """The local file of one table: the mirror's copy, or a download from the pinned commit (both checked)."""
    if aflow.resolve_source(source) == "mirror":
        path, digest = checked_mirror_file(MIRROR.format(name=table.name))
        if digest != table.sha256:
            raise ChecksumError(f"{path}: sha256 differs from RxnNet {COMMIT[:7]}'s {table.name} ({table.sha256})")
        return path
    return fetch(
        url.format(path=table.path),
        cache_dir("expt-dhf") / f"{table.name}.pkl.gz",
        checksum=("sha256", table.sha256),
    )


def _measured(value: Any) -> float:
    """A table's value: a number, or the NBS/JANAF tables' {temperature: value} at 298.15 K."""
    if isinstance(value, dict):
        value = value.get(TEMPERATURE, np.nan)
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def experimental_table(tables: dict[str, pd.DataFrame], skips: Skips | None = None) -> pd.DataFrame:
    """One row per MP id (:data:`COLUMNS`): the first of :data:`TABLES` with a measured value for it.

    ``tables`` maps each table's name to its frame (indexed by MP id); an entry without a measured value
    in any table is a skip.
    """
    skips = skips if skips is not None else Skips()
    rows: dict[str, dict[str, Any]] = {}
    unmeasured: dict[str, str] = {}
    for table in TABLES:
        frame = tables[table.name]
        if table.column not in frame.columns:
            raise BadTable(f"RxnNet table {table.name} has no column {table.column!r}")
        wang = frame["hf_wang"] if "hf_wang" in frame.columns else pd.Series(np.nan, index=frame.index)
        for mpid, value, formula, organic, kinds, hf_wang in zip(
            frame.index.astype(str),
            frame[table.column],
            frame["formula"],
            frame["organic"],
            frame["chemistry_type"],
            wang,
        ):
            if mpid in rows:
                if np.isnan(rows[mpid]["hf_wang_ev_per_atom"]):
                    rows[mpid]["hf_wang_ev_per_atom"] = _measured(hf_wang)
                continue
            measured = _measured(value)
            if not np.isfinite(measured):
                unmeasured.setdefault(mpid, table.name)
                continue
            unmeasured.pop(mpid, None)
            rows[mpid] = {
                "material_id": mpid,
                "formula": str(formula),
                "dhf_expt_ev_per_atom": measured,
                "source": table.source,
                "table": table.name,
                "disputed": table.disputed,
                "organic": bool(organic),
                "chemistry_type": ";".join(sorted(str(k) for k in kinds)) if isinstance(kinds, list) else str(kinds),
                "hf_wang_ev_per_atom": _measured(hf_wang),
            }
    for mpid, name in unmeasured.items():
        skips.add(BadEntry(mpid, f"no measured value at {TEMPERATURE} K in {name}", "label", "no measured value"))
    return pd.DataFrame(list(rows.values()), columns=COLUMNS)


def load(source: str = "auto", url: str = URL, skips: Skips | None = None) -> pd.DataFrame:
    """The experimental table (:func:`experimental_table`) from the mirror or the pinned commit."""
    tables = {t.name: read_table(table_path(t, source, url), f"RxnNet {t.name}") for t in TABLES}
    return experimental_table(tables, skips)


def composition(formula: str) -> Any:
    """A pymatgen ``Composition`` of a tabulated formula, hydrates and mixed oxides included (``Na2TeO3·5H2O``,
    ``(3Na2O·Nb2O5)``: the parts around each ``·`` with their leading multiplier)."""
    from pymatgen.core import Composition

    total = Composition()
    whole = formula.strip()
    if whole.startswith("(") and whole.endswith(")") and "·" in whole:  # (3Na2O·Nb2O5): a mixed oxide written as one
        whole = whole[1:-1]
    for part in whole.split("·"):
        found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)?\s*(.+?)\s*", part)
        if found is None:
            raise ValueError(f"empty part in {formula!r}")
        total += Composition(found[2]) * float(found[1] or 1)
    return total


def join_structures(table: pd.DataFrame, crystals: pd.DataFrame, skips: Skips) -> pd.DataFrame:
    """The experimental rows with a crystal of ``crystals`` (``material_id``, ``cif``, DFT targets) of the same
    reduced formula; the others are skips with their reason. Adds ``dft`` (MP's formation energy per atom,
    eV/atom), ``residual`` (experiment minus DFT) and the structure's ``reduced_formula``."""
    from pymatgen.core import Structure

    joined = table.merge(crystals, on="material_id", how="left", validate="one_to_one")
    keep, formulas = [], []
    for k, row in enumerate(joined.itertuples(index=False)):
        if not isinstance(row.cif, str):
            skips.add(BadEntry(row.material_id, "no mp-cgcnn structure of this id", "join", "no mp-cgcnn structure"))
            continue
        try:
            tabulated = composition(row.formula).fractional_composition
        except (ValueError, KeyError) as exc:
            skips.add(BadEntry(row.material_id, f"formula {row.formula!r} unreadable: {exc}", "join", "bad formula"))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen notes rounded coordinates; the featuriser checks geometry
            structure = Structure.from_str(row.cif, fmt="cif").composition
        if not tabulated.almost_equals(structure.fractional_composition):
            skips.add(
                BadEntry(
                    row.material_id,
                    f"formula {row.formula} disagrees with its structure's {structure.reduced_formula}",
                    "join",
                    "composition disagrees",
                )
            )
            continue
        keep.append(k)
        formulas.append(structure.reduced_formula)
    out = joined.iloc[keep].reset_index(drop=True)
    out["reduced_formula"] = formulas  # the structure's, which composition models read
    out["dft"] = out["formation_energy_per_atom"]
    out["residual"] = out["dhf_expt_ev_per_atom"] - out["dft"]
    return out
