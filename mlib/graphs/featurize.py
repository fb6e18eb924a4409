"""Crystals to graphs: in parallel processes, cached on disk.

``cgcnn`` graphs are DGL graphs (CGCNN, GCN, GraphSAGE, GINE), cached with DGL's ``save_graphs``; ``matgl``
graphs are PyTorch Geometric ``Data`` (matgl 4's MEGNet and M3GNet), cached as packed tensors read with
``weights_only=True``. :func:`collate` batches either kind.

The cache key is a digest of the input entries (ids and structures), the graph parameters and
the featuriser version, so a changed data file or radius builds new graphs and an unchanged one
loads them back. Entries that cannot become graphs are counted skips with their id and reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import dgl
import numpy as np
import pandas as pd
import torch

from mlib.catalogue import data_label
from mlib.data.errors import BadEntry
from mlib.data.skips import Skips
from mlib.graphs.atom_features import MAX_Z
from mlib.graphs.neighbors import GraphSpec, featurize_one, featurizer_version
from mlib.parallel import worker_pool
from mlib.paths import cache_dir
from mlib.progress import track
from mlib.provenance import file_digest
from mlib.store import atomic_write, load_torch, save_torch, write_text

Graph = Any  # a dgl.DGLGraph (cgcnn kind) or a torch_geometric.data.Data (matgl kind)


@dataclass
class GraphSet:
    """Crystal graphs of one data set, row-aligned with ``table`` (id, targets, metadata)."""

    name: str
    graphs: list[Graph]
    table: pd.DataFrame
    spec: GraphSpec
    skips: Skips = field(default_factory=Skips)
    from_cache: bool = False
    source_digest: str = ""  # digest of what the full set was built from (the graph cache key)

    def __len__(self) -> int:
        return len(self.graphs)

    @property
    def label(self) -> str:
        """How tables and captions name the set: name and crystal count."""
        return data_label(self.name, len(self))

    def data_digest(self, target: str) -> str:
        """Digest of exactly what a model trains on here: the source, these crystals' ids and ``target`` values."""
        h = hashlib.sha256(self.source_digest.encode())
        h.update("\x1f".join(self.table["id"].astype(str)).encode())
        h.update(self.table[target].to_numpy(dtype=np.float64).tobytes())
        return h.hexdigest()

    def data_key(self, target: str) -> dict[str, object]:
        """The part of a run's key that says what it trained on: data set, crystal count, target, digest."""
        return {"dataset": self.name, "crystals": len(self), "target": target, "digest": self.data_digest(target)}

    def first(self, limit: int | None) -> GraphSet:
        """The first ``limit`` crystals as a labelled subset (``name (first N)``); all when None."""
        if limit is None or limit >= len(self):
            return self
        return self.subset(range(limit), f"{self.name.removesuffix(f' (first {len(self):,})')} (first {limit:,})")

    @staticmethod
    def first_of(name: str) -> tuple[str, int | None]:
        """The data set and N of a name :meth:`first` or a limited load gave (``mp-cgcnn (first 5,000)``); N None
        for a whole set."""
        found = re.fullmatch(r"(.+) \(first ([\d,]+)\)", name)
        return (found[1], int(found[2].replace(",", ""))) if found else (name, None)

    def target(self, column: str) -> torch.Tensor:
        return torch.tensor(self.table[column].to_numpy(dtype=np.float32))

    def with_finite(self, column: str) -> GraphSet:
        """The crystals whose ``column`` is finite; the others become counted skips."""
        values = self.table[column].to_numpy(dtype=float)
        finite = np.isfinite(values)
        if finite.all():
            return self
        kept = self.subset(np.flatnonzero(finite))
        kept.skips = Skips(strict=self.skips.strict, records=list(self.skips.records))
        for entry_id, value in zip(self.table["id"][~finite], values[~finite]):
            kept.skips.add(BadEntry(str(entry_id), f"{column} is {value}", "target", f"non-finite {column}"))
        return kept

    def subset(self, rows: np.ndarray | list[int] | range, name: str | None = None) -> GraphSet:
        rows = list(rows)
        return GraphSet(
            name or self.name,
            [self.graphs[i] for i in rows],
            self.table.iloc[rows].reset_index(drop=True),
            self.spec,
            self.skips,
            self.from_cache,
            self.source_digest,
        )


def to_graph(arrays: dict[str, np.ndarray]) -> Graph:
    """A graph from neighbour arrays.

    ``cgcnn`` kind, a DGL graph: node ``z``; edge ``dist`` (A) and ``vec`` (A, j - i). ``matgl`` kind, a PyG
    ``Data``: ``z``, ``node_type`` and ``pos`` (A) per atom; ``edge_index`` (2, bonds), ``pbc_offset`` and
    ``pbc_offshift`` (A) per bond: what matgl's models read.
    """
    if "node_type" in arrays:
        return _pyg_graph({k: torch.from_numpy(v) for k, v in arrays.items()})
    graph = dgl.graph((torch.from_numpy(arrays["src"]), torch.from_numpy(arrays["dst"])), num_nodes=len(arrays["z"]))
    graph.ndata["z"] = torch.from_numpy(arrays["z"])
    graph.edata["dist"] = torch.from_numpy(arrays["dist"])
    graph.edata["vec"] = torch.from_numpy(arrays["vec"])
    return graph


NODE_FIELDS, EDGE_FIELDS = ("z", "node_type", "pos"), ("src", "dst", "offset", "offshift")


def _pyg_graph(t: dict[str, torch.Tensor]) -> Graph:
    from mlib.graphs.pyg import CrystalGraph

    return CrystalGraph(
        z=t["z"],
        node_type=t["node_type"],
        pos=t["pos"],
        edge_index=torch.stack([t["src"], t["dst"]]),
        pbc_offset=t["offset"],
        pbc_offshift=t["offshift"],
        num_nodes=len(t["z"]),
    )


def pack(graphs: list[Graph]) -> dict[str, torch.Tensor]:
    """PyG graphs as a few concatenated tensors (with per-graph atom and bond counts): a cache entry that
    ``torch.load(weights_only=True)`` reads, holding nothing but tensors."""
    fields = {
        "z": [g.z for g in graphs],
        "node_type": [g.node_type for g in graphs],
        "pos": [g.pos for g in graphs],
        "src": [g.edge_index[0] for g in graphs],
        "dst": [g.edge_index[1] for g in graphs],
        "offset": [g.pbc_offset for g in graphs],
        "offshift": [g.pbc_offshift for g in graphs],
    }
    packed = {k: torch.cat(v) for k, v in fields.items()}
    packed["atoms"] = torch.tensor([len(g.z) for g in graphs])
    packed["bonds"] = torch.tensor([g.edge_index.shape[1] for g in graphs])
    return packed


def unpack(packed: dict[str, torch.Tensor]) -> list[Graph]:
    """The graphs :func:`pack` packed, each owning its tensors (a view would pickle the whole packed storage
    with every graph sent to a worker)."""
    atoms, bonds = packed["atoms"].tolist(), packed["bonds"].tolist()
    nodes = {k: packed[k].split(atoms) for k in NODE_FIELDS}
    edges = {k: packed[k].split(bonds) for k in EDGE_FIELDS}
    return [
        _pyg_graph({**{k: v[i].clone() for k, v in nodes.items()}, **{k: v[i].clone() for k, v in edges.items()}})
        for i in range(len(atoms))
    ]


def collate(graphs: list[Graph]) -> Graph:
    """One batched graph: ``dgl.batch`` for DGL graphs, a PyG ``Batch`` (with ``batch`` and ``num_graphs``)
    for PyG graphs."""
    if isinstance(graphs[0], dgl.DGLGraph):
        return dgl.batch(graphs)
    from torch_geometric.data import Batch

    return Batch.from_data_list(graphs)


def input_digest(ids: list[str], sources: list[Any], spec: GraphSpec, table: pd.DataFrame) -> str:
    """Digest of what a graph set is built from: entries, their table, graph parameters, featuriser version."""
    h = hashlib.sha256(
        json.dumps(
            {
                "spec": spec.__dict__,
                "version": featurizer_version(spec.kind),
                "max_z": MAX_Z,
                "columns": list(table.columns),
            }
        ).encode()
    )
    h.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
    for entry_id, source in zip(ids, sources):
        h.update(str(entry_id).encode())
        if isinstance(source, str):
            h.update(source.encode())
        elif isinstance(source, dict):
            for key in sorted(source):
                h.update(np.asarray(source[key]).tobytes() if key != "species" else "|".join(source[key]).encode())
        else:
            h.update(repr(source).encode())
    return h.hexdigest()


log = logging.getLogger(__name__)


class NoGraphs(ValueError):
    """Not one crystal of a data set could become a graph."""


CACHE_FILES = ("graphs.bin", "table.parquet", "skips.csv")
CACHE_DIGEST = "cache.sha256"


def featurize(
    frame: pd.DataFrame,
    name: str,
    spec: GraphSpec = GraphSpec(),
    source: str = "source",
    id_column: str = "id",
    workers: int = 1,
    strict: bool = False,
    cache: bool = True,
) -> GraphSet:
    """Graphs for every row of ``frame`` (``source``: CIF text or a lattice/species/coords dict).

    The other columns (targets, formula, ...) become the graph set's table. With ``cache`` the
    graphs are stored under ``$MLIB_CACHE/graphs/<digest>/`` with the digest of their files, and loaded
    from there next time; a damaged cache entry is rebuilt with a one-line warning naming it. When no
    crystal at all can become a graph, :class:`NoGraphs` names the data set and the skips file.
    """
    ids = frame[id_column].astype(str).tolist()
    sources = frame[source].tolist()
    table = frame.drop(columns=[source]).reset_index(drop=True)
    digest = input_digest(ids, sources, spec, table)
    folder = cache_dir("graphs", digest[:24]) if cache else None
    if folder is not None and (folder / "graphs.bin").exists():
        try:
            return _load(folder, name, spec, strict, digest)
        except DamagedCache as exc:
            log.warning("graph cache %s is damaged (%s); rebuilding it", folder, exc)
            for file in (*CACHE_FILES, CACHE_DIGEST):
                (folder / file).unlink(missing_ok=True)
    skips = Skips(strict=strict)
    graphs, kept = [], []
    worker = partial(featurize_one, spec=spec, max_z=MAX_Z)
    items = list(zip(ids, sources))
    if workers > 1 and len(items) > 1:
        with worker_pool(workers) as pool:
            results = pool.map(worker, items, chunksize=max(1, min(256, len(items) // (8 * workers))))
            _collect(results, graphs, kept, skips, len(items), name)
    else:
        _collect(map(worker, items), graphs, kept, skips, len(items), name)
    if items and not graphs:
        where = cache_dir("skips") / f"{digest[:24]}.csv"
        skips.table().to_csv(where, index=False)
        reasons = "; ".join(f"{row.count} {row.kind}" for row in skips.summary().itertuples())
        raise NoGraphs(
            f"none of the {len(items):,} crystals of {name} could become a graph ({reasons}); "
            f"every entry and its reason: {where}"
        )
    graph_set = GraphSet(name, graphs, table.iloc[kept].reset_index(drop=True), spec, skips, source_digest=digest)
    if folder is not None:
        _save(folder, graph_set)
    return graph_set


def _collect(results, graphs: list, kept: list[int], skips: Skips, total: int, name: str) -> None:
    for row, (entry_id, result) in enumerate(track(results, total, f"graphs {name}", unit="crystal")):
        if isinstance(result, tuple):
            kind, detail = result
            skips.add(BadEntry(entry_id, detail, "graph", kind))
        else:
            graphs.append(to_graph(result))
            kept.append(row)


class DamagedCache(RuntimeError):
    """A graph cache entry whose files do not match their digest or cannot be read."""


def _files_digest(folder: Path) -> str:
    return "\n".join(f"{file_digest(folder / name)}  {name}" for name in CACHE_FILES) + "\n"


def _save(folder: Path, graph_set: GraphSet) -> None:
    """Each file written atomically under a name of its own, so processes that build the same entry at
    once (sweep workers starting together) never see or leave a partial file."""
    atomic_write(folder / "table.parquet", lambda tmp: graph_set.table.to_parquet(tmp, index=False))
    atomic_write(folder / "skips.csv", lambda tmp: graph_set.skips.table().to_csv(tmp, index=False))
    if graph_set.spec.kind == "cgcnn":
        atomic_write(folder / "graphs.bin", lambda tmp: dgl.save_graphs(str(tmp), graph_set.graphs))
    else:
        save_torch(folder / "graphs.bin", pack(graph_set.graphs))
    write_text(folder / CACHE_DIGEST, _files_digest(folder))  # last: a complete, verifiable entry or none


def _load(folder: Path, name: str, spec: GraphSpec, strict: bool, digest: str) -> GraphSet:
    """A cache entry, verified against its digest file. An entry without one (interrupted before its digest
    was written, or altered) cannot be verified and is rebuilt, never signed as it is."""
    recorded = folder / CACHE_DIGEST
    missing = [file for file in (*CACHE_FILES, CACHE_DIGEST) if not (folder / file).exists()]
    if missing:
        raise DamagedCache(f"missing {', '.join(missing)}")
    if recorded.read_text() != _files_digest(folder):
        raise DamagedCache("its files do not match cache.sha256")
    try:
        if spec.kind == "cgcnn":
            graphs, _ = dgl.load_graphs(str(folder / "graphs.bin"))
        else:
            graphs = unpack(load_torch(folder / "graphs.bin"))
        table = pd.read_parquet(folder / "table.parquet")
        skip_rows = pd.read_csv(folder / "skips.csv", dtype=str)
    except Exception as exc:  # DGL, pyarrow and pandas raise their own types for damaged files
        raise DamagedCache(f"{type(exc).__name__} while reading it") from None
    if len(graphs) != len(table):
        raise DamagedCache(f"{len(graphs)} graphs for {len(table)} table rows")
    skips = Skips(strict=strict)
    for row in skip_rows.itertuples():
        skips.add(BadEntry(row.id, row.reason, row.stage, row.kind))
    return GraphSet(name, graphs, table, spec, skips, from_cache=True, source_digest=digest)
