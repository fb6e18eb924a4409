"""Neighbour lists for the study's two graph kinds (safe to run in worker processes).

* ``cgcnn`` (CGCNN, GCN, GraphSAGE, GINE): each atom is connected to its ``max_neighbors`` nearest
  neighbours (periodic images included) within ``radius``. Neighbours at the same distance keep
  pymatgen's neighbour-list order (``tie_order="pymatgen"``: a stable sort by distance, as the
  reference implementation's ``sorted(get_all_neighbors(...), key=distance)``) or are ordered by
  neighbour index (``"index"``); either is deterministic. Edges point from the neighbour j to the
  centre i, and carry the distance and the pair vector r_ij = x_j + image - x_i.
* ``matgl`` (MEGNet, M3GNet): matgl's own converter (``matgl.ext.pymatgen.Structure2Graph``, matgl 4's PyG
  graphs), every pair within ``radius``, with the Cartesian positions and periodic offsets its models read
  (``node_type``, ``pos``, ``pbc_offset``, ``pbc_offshift``). ``max_neighbors`` is not used.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlib.catalogue import (
    GRAPH_KINDS,
    MAX_NEIGHBORS,
    MAX_PAIRS,
    MIN_DISTANCE,
    MIN_VOLUME_PER_ATOM,
    RADIUS,
    TIE_ORDERS,
)

# Bump a kind's version when its arrays change meaning; part of the graph cache key and of every run key.
# matgl 2: the edges of matgl 4's PyG converter (1: matgl 1.0.0's DGL converter).
FEATURIZER_VERSIONS = {"cgcnn": 1, "matgl": 2}


def featurizer_version(kind: str) -> int:
    """The version of the featuriser of graph kind ``kind``."""
    return FEATURIZER_VERSIONS[kind]


DEGENERATE_VOLUME = 1e-6  # A^3 (per atom where the atoms are known): a cell of ~0 volume, a degenerate lattice


@dataclass(frozen=True)
class GraphSpec:
    """How crystals become graphs: the kind, neighbour radius (A), the per-atom neighbour cap and the
    order of neighbours at equal distance (which decides who is kept at the cap)."""

    radius: float = RADIUS
    max_neighbors: int = MAX_NEIGHBORS
    kind: str = "cgcnn"
    tie_order: str = TIE_ORDERS[0]

    def __post_init__(self) -> None:
        if self.kind not in GRAPH_KINDS:
            raise ValueError(f"unknown graph kind {self.kind!r}; choose from {GRAPH_KINDS}")
        if self.tie_order not in TIE_ORDERS:
            raise ValueError(f"unknown tie order {self.tie_order!r}; choose from {TIE_ORDERS}")
        if not (0 < self.radius < float("inf")) or self.max_neighbors < 1:
            raise ValueError(f"radius must be > 0 and max_neighbors >= 1, got {self.radius}, {self.max_neighbors}")


class NeighborError(ValueError):
    """A crystal cannot become a graph: ``kind`` is the category, the message the detail."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def to_structure(source: Any):
    """A pymatgen Structure from CIF text, a ``{lattice, species, frac_coords}`` dict, or a Structure."""
    from pymatgen.core import Lattice, Structure

    if isinstance(source, Structure):
        return source
    if isinstance(source, str):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return Structure.from_str(source, fmt="cif")
            except Exception as exc:  # pymatgen raises many types for broken CIFs
                volume = cif_cell_volume(source)
                if volume is not None and not volume > DEGENERATE_VOLUME:
                    raise NeighborError(
                        "cell volume", f"cell volume {volume:.3g} A^3 (from the CIF's cell): a degenerate cell (~0)"
                    ) from None
                raise NeighborError("unparsable CIF", f"unparsable CIF ({type(exc).__name__}: {exc})") from None
    if isinstance(source, dict):
        return Structure(Lattice(source["lattice"]), source["species"], source["frac_coords"])
    raise NeighborError("no structure", f"cannot read a structure from {type(source).__name__}")


def cif_cell_volume(text: str) -> float | None:
    """The cell volume (A^3) a CIF's cell parameters give (its first data block), or None if they cannot be read."""
    from pymatgen.io.cif import CifFile, str2float

    try:
        block = next(iter(CifFile.from_str(text).data.values())).data
        a, b, c = (str2float(block[f"_cell_length_{x}"]) for x in "abc")
        cos = np.cos(np.radians([str2float(block[f"_cell_angle_{x}"]) for x in ("alpha", "beta", "gamma")]))
    except Exception:  # no block, missing or unreadable parameters
        return None
    return float(a * b * c * np.sqrt(max(1 - (cos**2).sum() + 2 * cos.prod(), 0.0)))


def pairs_within(n_atoms: int, volume: float, radius: float) -> float:
    """Atom pairs within ``radius`` (A) expected from the density alone: what a neighbour list will hold."""
    return n_atoms * n_atoms / volume * 4.0 / 3.0 * np.pi * radius**3


def check_geometry(structure, radius: float) -> None:
    """Refuse, with a :class:`NeighborError` saying why, a structure that no real crystal looks like, before any
    neighbour list within ``radius`` is made (its size is bounded by the density, checked first): partial
    occupancy, no atoms, a cell of (near) zero volume, atoms closer than :data:`MIN_DISTANCE`, less than
    :data:`MIN_VOLUME_PER_ATOM` per atom, or more than :data:`MAX_PAIRS` atom pairs within ``radius``."""
    if not structure.is_ordered:
        raise NeighborError("partial occupancy", "partial occupancy: only ordered structures can become crystal graphs")
    n = len(structure)
    if n == 0:
        raise NeighborError("no atoms", "structure has no atoms")
    volume = abs(float(structure.lattice.volume))
    if not volume / n > DEGENERATE_VOLUME:  # NaN too
        raise NeighborError("cell volume", f"cell volume {volume:.3g} A^3 for {n} atoms: a degenerate cell (~0)")
    if pairs_within(n, volume, MIN_DISTANCE) <= 100_000:  # bounded; denser cells fail the volume floor below
        shortest = shortest_distance(structure, MIN_DISTANCE)
        if shortest < MIN_DISTANCE:
            raise NeighborError(
                "atoms too close",
                f"atoms {shortest:.3g} A apart (under {MIN_DISTANCE} A: overlapping atoms or a wrong cell)",
            )
    if volume / n < MIN_VOLUME_PER_ATOM:
        raise NeighborError(
            "cell volume",
            f"cell volume {volume:.3g} A^3 for {n} atoms ({volume / n:.3g} A^3 per atom, under "
            f"{MIN_VOLUME_PER_ATOM} A^3: a wrong cell or wrong units)",
        )
    pairs = pairs_within(n, volume, radius)
    if pairs > MAX_PAIRS:
        raise NeighborError(
            "too many atom pairs",
            f"about {pairs:,.0f} atom pairs within {radius} A ({n:,} atoms, {n / volume:.3g} atoms/A^3); "
            f"the cap is {MAX_PAIRS:,} (a smaller cell or radius)",
        )


def shortest_distance(structure, within: float) -> float:
    """The shortest distance (A) between two atoms, periodic images included, if under ``within``; else inf.
    Atoms on the same spot count (distance 0)."""
    centers, neighbors, images, dist = structure.get_neighbor_list(within, exclude_self=False)
    other = (centers != neighbors) | np.any(images != 0, axis=1)
    return float(dist[other].min()) if other.any() else float("inf")


def structure_arrays(structure, spec: GraphSpec) -> dict[str, np.ndarray]:
    """Atomic numbers and the edge arrays (src, dst, distance, pair vector) of one crystal."""
    z = np.array([site.specie.Z for site in structure], dtype=np.int64)
    if len(z) == 0:
        raise NeighborError("no atoms", "structure has no atoms")
    centers, neighbors, images, dist = structure.get_neighbor_list(spec.radius)
    keep = dist > 1e-8
    centers, neighbors, images, dist = centers[keep], neighbors[keep], images[keep], dist[keep]
    keys = (dist, centers) if spec.tie_order == "pymatgen" else (neighbors, dist, centers)
    order = np.lexsort(keys)  # a stable sort: equal keys keep pymatgen's order
    centers, neighbors, images, dist = centers[order], neighbors[order], images[order], dist[order]
    starts = np.searchsorted(centers, np.arange(len(z)))
    rank = np.arange(len(centers)) - starts[centers]
    keep = rank < spec.max_neighbors
    centers, neighbors, images, dist = centers[keep], neighbors[keep], images[keep], dist[keep]
    lonely = np.setdiff1d(np.arange(len(z)), centers)
    if len(lonely):
        raise NeighborError(
            "atom without neighbours",
            f"atom {int(lonely[0])} ({structure[int(lonely[0])].specie}) has no neighbour "
            f"within {spec.radius} A ({len(lonely)} such atoms)",
        )
    cart = structure.cart_coords
    vec = cart[neighbors] + images @ structure.lattice.matrix - cart[centers]
    return {
        "z": z,
        "src": neighbors.astype(np.int64),
        "dst": centers.astype(np.int64),
        "dist": dist.astype(np.float32),
        "vec": vec.astype(np.float32),
    }


def matgl_arrays(structure, spec: GraphSpec) -> dict[str, np.ndarray]:
    """Atomic numbers, matgl element indices and the edges of matgl's converter (src -> dst image)."""
    from matgl.config import DEFAULT_ELEMENTS as ELEMENTS  # the element types of the study's matgl models
    from matgl.ext.pymatgen import Structure2Graph

    z = np.array([site.specie.Z for site in structure], dtype=np.int64)
    if len(z) == 0:
        raise NeighborError("no atoms", "structure has no atoms")
    unknown = sorted({site.specie.symbol for site in structure} - set(ELEMENTS))
    if unknown:
        raise NeighborError("element without features", f"element {unknown[0]} is not among matgl's element types")
    graph, lattice, _ = Structure2Graph(ELEMENTS, cutoff=spec.radius).get_graph(structure)
    lattice = lattice.reshape(3, 3).to(graph.frac_coords.dtype)
    src, dst = (t.numpy().astype(np.int64) for t in graph.edge_index)
    lonely = np.setdiff1d(np.arange(len(z)), src)
    if len(lonely):
        raise NeighborError(
            "atom without neighbours",
            f"atom {int(lonely[0])} ({structure[int(lonely[0])].specie}) has no neighbour "
            f"within {spec.radius} A ({len(lonely)} such atoms)",
        )
    return {
        "z": z,
        "node_type": graph.node_type.numpy().astype(np.int64),
        "src": src,
        "dst": dst,
        "pos": (graph.frac_coords @ lattice).numpy().astype(np.float32),
        "offset": graph.pbc_offset.numpy().astype(np.float32),
        "offshift": (graph.pbc_offset.to(lattice.dtype) @ lattice).numpy().astype(np.float32),
    }


Failure = tuple[str, str]  # (kind, detail)


def featurize_one(item: tuple[str, Any], spec: GraphSpec, max_z: int) -> tuple[str, dict[str, np.ndarray] | Failure]:
    """Worker entry: ``(id, source)`` -> ``(id, arrays)`` or ``(id, (kind, detail))`` when it fails."""
    entry_id, source = item
    try:
        structure = to_structure(source)
        check_geometry(structure, spec.radius)
        arrays = structure_arrays(structure, spec) if spec.kind == "cgcnn" else matgl_arrays(structure, spec)
    except NeighborError as exc:
        return entry_id, (exc.kind, str(exc))
    except Exception as exc:  # a malformed record: report it, never lose the entry silently
        return entry_id, ("malformed record", f"{type(exc).__name__}: {exc}")
    bad = arrays["z"][(arrays["z"] < 1) | (arrays["z"] > max_z)]
    if len(bad):
        return entry_id, (
            "element without features",
            f"element Z={int(bad[0])} has no atom-feature data (supported: Z=1..{max_z})",
        )
    return entry_id, arrays
