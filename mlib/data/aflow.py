"""AFLOW AGL thermal expansion: live AFLUX queries and the mirror copy, one record format.

Both sources yield AFLOW's own field names; :func:`parse_record` turns either into an
:class:`AflowRecord`, so the study reads live responses and mirror records through one code path.
Geometry comes from ``lattice_matrix`` (mirror) or AFLOW's ``geometry`` (a, b, c, alpha, beta,
gamma; live), with ``positions_fractional`` ordered like the elements of ``compound``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlib.data import mirror
from mlib.data.download import fetch_json
from mlib.data.errors import BadEntry
from mlib.data.mirror import mirror_file
from mlib.data.skips import Skips
from mlib.paths import cache_dir
from mlib.progress import progress

AFLUX_URL = "https://aflow.org/API/aflux/"
TARGET = "agl_thermal_expansion_300K"
AGL_FIELDS = (
    "auid",
    "aurl",
    "compound",
    "species",
    "composition",
    "natoms",
    "nspecies",
    "spacegroup_relax",
    "geometry",
    "positions_fractional",
    TARGET,
)
MIRROR_RECORDS = "aflow-agl/aflow-agl-records.jsonl"
MIRROR_INDEX = "aflow-agl/aflow-agl-index/auid_tc.json"

_COMPOUND = re.compile(r"([A-Z][a-z]?)(\d*\.?\d*)")


@dataclass(frozen=True)
class AflowRecord:
    """One AFLOW entry: identity, composition, space group, geometry (if any) and the AGL target."""

    auid: str
    compound: str
    elements: tuple[str, ...]
    counts: tuple[int, ...]
    spacegroup: int
    target: float
    lattice: np.ndarray | None
    frac_coords: np.ndarray | None

    @property
    def species(self) -> list[str]:
        """Element of each site, in the order of ``frac_coords``."""
        return [el for el, n in zip(self.elements, self.counts) for _ in range(n)]

    @property
    def has_geometry(self) -> bool:
        return self.lattice is not None and self.frac_coords is not None

    @property
    def nspecies(self) -> int:
        return len(self.elements)

    def structure(self):
        """The relaxed crystal as a pymatgen ``Structure`` (raises ``BadEntry`` without geometry)."""
        from pymatgen.core import Lattice, Structure

        if not self.has_geometry:
            raise BadEntry(self.auid, "no geometry (lattice) for this entry", "geometry")
        return Structure(Lattice(self.lattice), self.species, self.frac_coords)


def parse_compound(compound: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """``"Hg33Rb3"`` -> ``(("Hg", "Rb"), (33, 3))``."""
    pairs = [(el, n) for el, n in _COMPOUND.findall(compound) if el]
    if not pairs or "".join(f"{el}{n}" for el, n in pairs) != compound:
        raise ValueError(f"cannot read compound {compound!r}")
    return tuple(el for el, _ in pairs), tuple(int(float(n)) if n else 1 for _, n in pairs)


def _split(value: Any) -> list[str]:
    return [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)


def _lattice_from_geometry(geometry: Any) -> np.ndarray:
    from pymatgen.core import Lattice

    a, b, c, alpha, beta, gamma = (float(v) for v in _split(geometry))
    return Lattice.from_parameters(a, b, c, alpha, beta, gamma).matrix


def parse_record(raw: dict[str, Any]) -> AflowRecord:
    """An AFLOW entry (live AFLUX or mirror) as an :class:`AflowRecord`; ``BadEntry`` names what is wrong.

    A missing geometry is not an error here: it yields a record without lattice, which the
    data-set builders count as a skip.
    """
    auid = str(raw.get("auid") or "<no auid>")
    try:
        compound = raw["compound"]
        elements, counts = parse_compound(compound)
    except (KeyError, ValueError) as exc:
        raise BadEntry(auid, f"unreadable compound ({exc})") from None
    if raw.get("species") is not None:  # live AFLUX: species and composition given separately
        species = tuple(_split(raw["species"]))
        if set(species) != set(elements):
            raise BadEntry(auid, f"species {species} disagree with compound {compound}")
    target = raw.get(TARGET)
    try:
        target = float(target)
    except (TypeError, ValueError):
        raise BadEntry(auid, f"missing {TARGET} ({target!r})", "target") from None
    if not math.isfinite(target):
        raise BadEntry(auid, f"non-finite {TARGET} ({target})", "target")
    try:
        spacegroup = int(raw["spacegroup_relax"])
    except (KeyError, TypeError, ValueError):
        raise BadEntry(auid, "missing spacegroup_relax") from None
    lattice, coords = None, None
    try:
        if raw.get("lattice_matrix") is not None:
            lattice = np.asarray(raw["lattice_matrix"], dtype=float).reshape(3, 3)
        elif raw.get("geometry") is not None:
            lattice = _lattice_from_geometry(raw["geometry"])
        if raw.get("positions_fractional") is not None:
            coords = np.asarray(raw["positions_fractional"], dtype=float).reshape(-1, 3)
    except (TypeError, ValueError) as exc:
        raise BadEntry(auid, f"unreadable geometry ({exc})", "geometry") from None
    if coords is not None and len(coords) != sum(counts):
        raise BadEntry(auid, f"{len(coords)} positions for {sum(counts)} atoms of {compound}", "geometry")
    if lattice is not None and abs(np.linalg.det(lattice)) < 1e-6:
        raise BadEntry(auid, "degenerate lattice (zero volume)", "geometry")
    return AflowRecord(auid, compound, elements, counts, spacegroup, target, lattice, coords)


def parse_records(raws: Iterable[dict[str, Any]], skips: Skips) -> list[AflowRecord]:
    """Parse entries, counting the unreadable ones in ``skips``."""
    records = []
    for raw in raws:
        try:
            records.append(parse_record(raw))
        except BadEntry as bad:
            skips.add(bad)
    return records


# -- sources -------------------------------------------------------------------------------


def aflux_entries(response: Any) -> list[dict[str, Any]]:
    """Entries of one AFLUX response: a list, or AFLOW's ``{"i of N": {...}}`` mapping."""
    if isinstance(response, list):
        return response
    if isinstance(response, dict):
        return list(response.values())
    raise ValueError(f"unexpected AFLUX response of type {type(response).__name__}")


def aflux_total(response: Any) -> int | None:
    """Total entry count from AFLOW's ``"i of N"`` keys, when present."""
    if isinstance(response, dict) and response:
        key = next(iter(response))
        match = re.fullmatch(r"\s*\d+\s+of\s+(\d+)\s*", key)
        if match:
            return int(match.group(1))
    return None


def aflux_url(page: int, per_page: int, base: str = AFLUX_URL, fields: Iterable[str] = AGL_FIELDS) -> str:
    """AFLUX query for the AGL set: every entry with a thermal expansion, one page of it."""
    selects = [f"{TARGET}(*)"] + [f for f in fields if f != TARGET]
    return f"{base}?{','.join(selects)},$paging({page},{per_page}),format(json)"


def fetch_agl_live(
    per_page: int = 1000,
    max_pages: int | None = None,
    cache: Path | None = None,
    base: str = AFLUX_URL,
    fetcher: Callable[..., Any] = fetch_json,
) -> list[dict[str, Any]]:
    """Every AGL entry from AFLUX, page by page, each page cached on disk.

    An interrupted download resumes at the first page not in the cache; a corrupt cached page is
    detected (digest, JSON) and fetched again. Paging stops at a short page or AFLOW's total.
    """
    key = hashlib.sha256(aflux_url(0, per_page, base).encode()).hexdigest()[:16]
    folder = cache or cache_dir("aflux", key)
    entries: list[dict[str, Any]] = []
    bar = progress(None, "AFLUX pages", unit="page")
    page = 1
    while max_pages is None or page <= max_pages:
        response = fetcher(aflux_url(page, per_page, base), folder / f"page_{page:05d}.json")
        batch = aflux_entries(response)
        entries += batch
        total = aflux_total(response)
        if total is not None and bar.total is None:
            bar.total = math.ceil(total / per_page)
        bar.update()
        if len(batch) < per_page or (total is not None and len(entries) >= total):
            break
        page += 1
    bar.close()
    return entries


def read_mirror_records() -> list[dict[str, Any]]:
    """The mirror's AGL records (``aflow-agl-records.jsonl``), as raw AFLOW entries."""
    path = mirror_file(MIRROR_RECORDS)
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def read_mirror_index() -> list[dict[str, Any]]:
    """The 5,534 entries of the study's AGL set (AFLUX response format; no targets, no geometry)."""
    return aflux_entries(json.loads(mirror_file(MIRROR_INDEX).read_text()))


def read_index(source: str = "auto") -> list[dict[str, Any]]:
    """The study's AGL entries with the index fields (auid, compound, nspecies, spacegroup_relax, ...):
    the mirror's index, or live AFLUX (the same paged, cached query as the records)."""
    return read_mirror_index() if resolve_source(source) == "mirror" else fetch_agl_live()


def resolve_source(source: str) -> str:
    """``"auto"`` is the mirror when ``$MLIB_DATA_MIRROR`` is set, else live AFLUX."""
    if source not in ("auto", "mirror", "live"):
        raise ValueError(f"unknown AFLOW source {source!r}; choose 'auto', 'mirror' or 'live'")
    if source == "auto":
        return "mirror" if mirror.available() else "live"
    return source


def load_agl(source: str = "auto", skips: Skips | None = None) -> list[AflowRecord]:
    """AGL records from the mirror or live AFLUX (see :func:`resolve_source`), parsed by the same code."""
    raws = {"mirror": read_mirror_records, "live": fetch_agl_live}[resolve_source(source)]()
    return parse_records(raws, skips if skips is not None else Skips())
