"""The PyTorch Geometric graph of a crystal for matgl's models, with room for M3GNet's three-body graph.

A :class:`CrystalGraph` batches like any PyG ``Data`` (atoms and bonds concatenated, ``edge_index`` offset by the
atoms before it); a three-body graph attached to it (``line_edge_index``, shape (2, triples), and
``kept_edge_ids``, shape (bonds within the three-body cutoff,), both holding bond ids; ``n_triple_ij``, shape
(bonds,)) is offset by the bonds before it, so a batch carries the three-body graph of the batch.
"""

from __future__ import annotations

from typing import Any

from torch_geometric.data import Data

BOND_INDEXED = ("line_edge_index", "kept_edge_ids")


class CrystalGraph(Data):
    """A crystal as matgl reads it: ``z``, ``node_type``, ``pos`` per atom; ``edge_index``, ``pbc_offset``,
    ``pbc_offshift`` per bond; optionally its three-body graph (see the module)."""

    def __inc__(self, key: str, value: Any, *args, **kwargs) -> Any:
        if key in BOND_INDEXED:
            return self.edge_index.size(1)
        return super().__inc__(key, value, *args, **kwargs)

    def __cat_dim__(self, key: str, value: Any, *args, **kwargs) -> Any:
        if key == "kept_edge_ids":
            return 0
        return super().__cat_dim__(key, value, *args, **kwargs)
