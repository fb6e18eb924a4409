"""The 92-dimensional CGCNN atom features: the reference ``atom_init.json``, or built from pymatgen.

:func:`feature_table` returns either source as one table (row = atomic number). The pymatgen build:

Layout of the reference ``atom_init.json`` (Xie & Grossman 2018, Table S1), one-hot blocks:
group 19 (0 for lanthanides and actinides), period 7, electronegativity 10, covalent radius 10,
valence electrons 12, first ionisation energy 10 (log scale), electron affinity 10, block 4,
atomic volume 10 (log scale). Continuous properties are cut into 10 equal bins over the ranges in
``BIN_RANGES``: the ranges that best reproduce the reference's binning (calibrated once against
``atom_init.json``); the values themselves are pymatgen's. A missing value leaves its block zero.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache

import numpy as np

from mlib.catalogue import ATOM_FEATURE_SOURCES, MAX_Z  # elements with features: Z = 1..MAX_Z

BLOCKS: tuple[tuple[str, int], ...] = (
    ("group", 19),
    ("period", 7),
    ("electronegativity", 10),
    ("covalent_radius", 10),
    ("valence_electrons", 12),
    ("first_ionization_energy", 10),
    ("electron_affinity", 10),
    ("block", 4),
    ("atomic_volume", 10),
)
N_FEATURES = sum(n for _, n in BLOCKS)  # 92
# (low, high, log scale) of each binned property; values outside are put in the end bins.
BIN_RANGES: dict[str, tuple[float, float, bool]] = {
    "electronegativity": (0.54, 3.95, False),  # Pauling
    "covalent_radius": (0.0, 2.95, False),  # A
    "first_ionization_energy": (3.69, 26.86, True),  # eV
    "electron_affinity": (-3.16, 3.72, False),  # eV
    "atomic_volume": (4.39, 73.6, True),  # molar volume, cm^3/mol
}
BLOCK_LETTERS = "spdf"


def block_slices() -> dict[str, slice]:
    """Column range of each property in the 92-vector."""
    out, start = {}, 0
    for name, width in BLOCKS:
        out[name] = slice(start, start + width)
        start += width
    return out


def _valence_electrons(element) -> int:
    """CGCNN's count: the group number in the s and d blocks, group - 10 in the p block (He: 2),
    and the two outer s electrons in the f block."""
    if element.block == "f":
        return 2
    if element.symbol == "He":
        return 2
    return element.group - 10 if element.group > 12 else element.group


def element_properties(z: int) -> dict[str, float | int | str | None]:
    """The raw properties of element ``z`` from pymatgen (None where pymatgen has none)."""
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
    from pymatgen.core import Element

    el = Element.from_Z(z)

    def value(getter):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                v = float(getter())
            return v if math.isfinite(v) else None
        except (TypeError, ValueError, AttributeError, IndexError, KeyError):
            return None

    return {
        "group": 0 if el.block == "f" else el.group,
        "period": el.row,
        "electronegativity": value(lambda: el.X),
        "covalent_radius": value(lambda: CovalentRadius.radius[el.symbol]),
        "valence_electrons": _valence_electrons(el),
        "first_ionization_energy": value(lambda: el.ionization_energies[0]),
        "electron_affinity": value(lambda: el.electron_affinity),
        "block": el.block,
        "atomic_volume": value(lambda: el.molar_volume),
    }


def _bin(value: float, lo: float, hi: float, log: bool, n: int) -> int:
    if log:
        value, lo, hi = math.log(value), math.log(lo), math.log(hi)
    return min(n - 1, max(0, int((value - lo) / (hi - lo) * n)))


@cache
def atom_feature_table() -> np.ndarray:
    """``(MAX_Z + 1, 92)`` float32 table; row ``z`` holds element ``z``'s one-hot features (row 0 unused)."""
    props = {z: element_properties(z) for z in range(1, MAX_Z + 1)}
    table = np.zeros((MAX_Z + 1, N_FEATURES), dtype=np.float32)
    slices = block_slices()
    for name, width in BLOCKS:
        for z, p in props.items():
            v = p[name]
            if v is None:
                continue
            if name == "group":
                idx = int(v)
            elif name == "period":
                idx = int(v) - 1
            elif name == "valence_electrons":
                idx = min(int(v), width) - 1
            elif name == "block":
                idx = BLOCK_LETTERS.index(v)
            else:
                idx = _bin(v, *BIN_RANGES[name], n=width)
            if 0 <= idx < width:
                table[z, slices[name].start + idx] = 1.0
    return table


_FROM_WEIGHTS: ContextVar[bool] = ContextVar("atom_table_from_weights", default=False)


@contextmanager
def from_weights() -> Iterator[None]:
    """Within this block :func:`feature_table` returns a zero placeholder: for building a model whose
    saved weights (which include the table) are loaded next, without reading ``atom_init.json``."""
    token = _FROM_WEIGHTS.set(True)
    try:
        yield
    finally:
        _FROM_WEIGHTS.reset(token)


def feature_table(source: str) -> np.ndarray:
    """``(MAX_Z + 1, 92)`` atom features from ``source``: ``reference`` (the reference ``atom_init.json``),
    ``pymatgen``, or the path of a JSON file in ``atom_init.json``'s layout (Z as a string -> 92 numbers)."""
    if source not in ATOM_FEATURE_SOURCES and not source.endswith(".json"):
        raise ValueError(
            f"unknown atom-feature source {source!r}; choose from {ATOM_FEATURE_SOURCES} or give an atom_init.json path"
        )
    if _FROM_WEIGHTS.get():
        return np.zeros((MAX_Z + 1, N_FEATURES), dtype=np.float32)
    if source.endswith(".json"):
        return _table_from_file(source)
    return reference_table() if source == "reference" else atom_feature_table()


def _table_from_file(path: str) -> np.ndarray:
    import json
    from pathlib import Path

    file = Path(path).expanduser()
    if not file.exists():
        raise FileNotFoundError(f"atom-feature file {file} does not exist")
    try:
        return table_from_atom_init(json.loads(file.read_text()))
    except (json.JSONDecodeError, ValueError, TypeError) as exc:
        raise ValueError(f"{file} is not an atom_init.json-like file: {exc}") from None


@cache
def reference_table() -> np.ndarray:
    """The reference ``atom_init.json`` as a ``(MAX_Z + 1, 92)`` table (mirror copy, or downloaded and cached)."""
    from mlib.data.reference import reference_atom_init

    return table_from_atom_init(reference_atom_init())


def table_from_atom_init(atom_init: dict[str, list[float]]) -> np.ndarray:
    """An ``atom_init.json`` mapping (Z as a string -> features) as a table; every Z = 1..MAX_Z must be there."""
    missing = [z for z in range(1, MAX_Z + 1) if str(z) not in atom_init]
    if missing:
        raise ValueError(f"atom_init.json lacks elements Z = {missing[:5]} ({len(missing)} of 1..{MAX_Z})")
    widths = {len(atom_init[str(z)]) for z in range(1, MAX_Z + 1)}
    if widths != {N_FEATURES}:
        raise ValueError(f"atom_init.json rows have {sorted(widths)} features; CGCNN's layout has {N_FEATURES}")
    table = np.zeros((MAX_Z + 1, N_FEATURES), dtype=np.float32)
    for z in range(1, MAX_Z + 1):
        table[z] = atom_init[str(z)]
    return table


def agreement_with_reference(reference: dict[str, list[float]]) -> list[dict[str, float | str | int]]:
    """Per property, the fraction of elements whose one-hot bin equals the reference ``atom_init.json``."""
    table = atom_feature_table()
    rows = []
    zs = [int(z) for z in reference if 1 <= int(z) <= MAX_Z]
    for name, sl in block_slices().items():
        same = sum(np.array_equal(table[z, sl], np.asarray(reference[str(z)], dtype=np.float32)[sl]) for z in zs)
        rows.append(
            {
                "property": name,
                "width": sl.stop - sl.start,
                "elements": len(zs),
                "agree": same,
                "agreement": same / len(zs),
            }
        )
    whole = sum(np.array_equal(table[z], np.asarray(reference[str(z)], dtype=np.float32)) for z in zs)
    rows.append(
        {
            "property": "all 92 features",
            "width": N_FEATURES,
            "elements": len(zs),
            "agree": whole,
            "agreement": whole / len(zs),
        }
    )
    return rows
