"""How the training crystals are shared among clients: IID, by chemistry, or Dirichlet label skew.

* ``iid``: a seeded random split into near-equal shards.
* ``chemistry``: crystals are grouped by their most electronegative element (the anion of an ionic
  compound: oxides, fluorides, sulfides, ...; the most electronegative metal of an intermetallic),
  and each group belongs to one client, so clients hold disjoint chemistries. Groups are dealt
  largest first to the client with the fewest crystals (seeded tie-breaks) to keep sizes close.
* ``dirichlet``: label skew (Hsu, Qi & Brown 2019): the target is cut into ``bins`` quantile bins and
  each bin's crystals are shared among clients in proportions drawn from Dirichlet(``alpha``);
  small ``alpha`` means each client sees a narrow range of the target.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from mlib.catalogue import PARTITIONS


class PartitionError(ValueError):
    """A partition cannot be made as asked."""


def partition(
    rows: np.ndarray,
    n_clients: int,
    scheme: str = "iid",
    seed: int = 0,
    chemistry: pd.Series | None = None,
    target: np.ndarray | None = None,
    alpha: float = 0.5,
    bins: int = 10,
) -> list[np.ndarray]:
    """Disjoint shards of ``rows`` (row numbers of the training crystals), one per client.

    ``chemistry`` (group labels, see :func:`anion_elements`) and ``target`` are indexed by row number (needed by ``chemistry`` and ``dirichlet``).
    A shard may be empty (a client with no data); the caller decides what that means.
    """
    rows = np.asarray(rows)
    if n_clients < 1:
        raise PartitionError(f"n_clients must be >= 1, got {n_clients}")
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        return [np.sort(s) for s in np.array_split(rng.permutation(rows), n_clients)]
    if scheme == "chemistry":
        if chemistry is None:
            raise PartitionError("the chemistry partition needs each crystal's chemistry group")
        groups = pd.Series(rows).groupby(np.asarray(chemistry)[rows]).agg(list)
        order = sorted(groups.index, key=lambda g: (-len(groups[g]), rng.random()))
        shards: list[list[int]] = [[] for _ in range(n_clients)]
        for group in order:
            smallest = min(range(n_clients), key=lambda c: (len(shards[c]), c))
            shards[smallest].extend(groups[group])
        return [np.sort(np.array(s, dtype=rows.dtype)) for s in shards]
    if scheme == "dirichlet":
        if target is None:
            raise PartitionError("the dirichlet partition needs the target values")
        if not alpha > 0:
            raise PartitionError(f"alpha must be > 0, got {alpha}")
        values = np.asarray(target)[rows]
        edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
        label = np.searchsorted(edges, values, side="right")
        shards = [[] for _ in range(n_clients)]
        for b in np.unique(label):
            members = rng.permutation(rows[label == b])
            cuts = (np.cumsum(rng.dirichlet(np.full(n_clients, alpha))) * len(members)).astype(int)[:-1]
            for client, part in enumerate(np.split(members, cuts)):
                shards[client].extend(part)
        return [np.sort(np.array(s, dtype=rows.dtype)) for s in shards]
    raise PartitionError(f"unknown partition {scheme!r}; choose from {list(PARTITIONS)}")


def anion_elements(formulas: pd.Series) -> pd.Series:
    """The most electronegative element of each formula (Pauling scale; ties by atomic number)."""
    from pymatgen.core import Composition

    def anion(formula: str) -> str:
        elements = Composition(formula).elements
        return max(elements, key=lambda el: (el.X if el.X == el.X else 0.0, el.Z)).symbol

    # pymatgen warns that noble gases (He, Ne, Ar) have no Pauling value and gives NaN, which ``anion`` ranks
    # as 0; the warning (with the interpreter's path) would only be noise in the executed notebook.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No Pauling electronegativity", category=UserWarning)
        return formulas.map(anion)


def describe(shards: list[np.ndarray], target: np.ndarray, chemistry: pd.Series | None = None) -> pd.DataFrame:
    """Size, target mean and spread, and chemistry groups of each client's shard."""
    rows = []
    for client, shard in enumerate(shards):
        values = np.asarray(target)[shard]
        rows.append(
            {
                "client": client,
                "crystals": len(shard),
                "target mean": float(values.mean()) if len(shard) else float("nan"),
                "target std": float(values.std()) if len(shard) else float("nan"),
                "chemistry groups": ", ".join(pd.Series(np.asarray(chemistry)[shard]).value_counts().index[:4])
                + (" ..." if pd.Series(np.asarray(chemistry)[shard]).nunique() > 4 else "")
                if chemistry is not None
                else "",
            }
        )
    return pd.DataFrame(rows)
