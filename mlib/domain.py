"""How far a crystal lies from what a model was trained on: a domain check for its predictions.

A model's crystal vectors (the pooled vector before its head, standardised with the training crystals' mean
and spread) place every crystal in the space the model reads. A crystal's *distance* is the mean Euclidean
distance of its vector to its ``k`` nearest training vectors; it is read as a percentile of the validation
crystals' distances (crystals the model did not train on but that come from the same data set). A crystal
beyond the validation crystals' ``quantile`` (95 % by default) is flagged out of domain: the model has seen
little like it, and its prediction (and an ensemble's spread) deserves less trust.

The reference is fitted on validation crystals only and stored beside the model file as ``domain.pt`` (tensors
read with ``weights_only``), bound to that model file by its SHA-256.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mlib import model_file, provenance, store
from mlib.embedding import crystal_vectors, split_rows
from mlib.graphs.featurize import GraphSet

DOMAIN_FILE = "domain.pt"
K = 5
QUANTILE = 0.95


class DomainMismatch(ValueError):
    """A domain file that does not belong to the model file beside it."""


@dataclass
class Domain:
    """The training crystals' standardised vectors and the validation crystals' sorted distances to them."""

    train: torch.Tensor  # (n_train, d), standardised
    mean: torch.Tensor  # (d,)
    std: torch.Tensor  # (d,)
    reference: torch.Tensor  # (n_val,), sorted distances of the validation crystals
    k: int
    quantile: float
    model_sha256: str

    @property
    def threshold(self) -> float:
        """The distance beyond which a crystal is flagged: the validation crystals' ``quantile``."""
        return float(np.quantile(self.reference.numpy(), self.quantile))

    def distances(self, vectors: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        """``(n,)`` mean distance of each vector to its ``k`` nearest training vectors (``exclude_self``: the
        vectors are training vectors, and each one's zero distance to itself is left out)."""
        z = (torch.as_tensor(vectors, dtype=torch.float32) - self.mean) / self.std
        nearest = torch.cdist(z, self.train).topk(self.k + int(exclude_self), largest=False).values
        return nearest[:, int(exclude_self) :].mean(dim=1).numpy()

    def percentiles(self, distances: np.ndarray) -> np.ndarray:
        """Each distance as the percentage of validation crystals at or below it (100: beyond them all)."""
        reference = self.reference.numpy()
        return 100.0 * np.searchsorted(reference, distances, side="right") / len(reference)

    def flags(self, distances: np.ndarray) -> np.ndarray:
        """True where a crystal lies beyond the validation crystals' ``quantile``."""
        return np.asarray(distances) > self.threshold


def fit(
    train_vectors: np.ndarray, val_vectors: np.ndarray, model_sha256: str, k: int = K, quantile: float = QUANTILE
) -> Domain:
    """A domain from a model's training and validation crystal vectors (``(n, d)`` each)."""
    if len(train_vectors) <= k or len(val_vectors) == 0:
        raise ValueError(f"a domain needs more than k = {k} training crystals and some validation crystals")
    train = torch.as_tensor(train_vectors, dtype=torch.float32)
    mean, std = train.mean(dim=0), train.std(dim=0).clamp_min(1e-8)
    domain = Domain((train - mean) / std, mean, std, torch.empty(0), k, quantile, model_sha256)
    domain.reference = torch.as_tensor(np.sort(domain.distances(val_vectors)), dtype=torch.float32)
    return domain


def save(domain: Domain, path: Path) -> Path:
    """Write ``domain.pt`` (tensors and plain values only)."""
    return store.save_torch(
        Path(path),
        {
            "train": domain.train,
            "mean": domain.mean,
            "std": domain.std,
            "reference": domain.reference,
            "k": domain.k,
            "quantile": domain.quantile,
            "model_sha256": domain.model_sha256,
        },
    )


def load(path: Path, model_path: Path) -> Domain:
    """The domain file ``path`` of the model file ``model_path`` (read with ``weights_only``); a domain of another
    model file is refused."""
    saved = store.load_torch(Path(path))
    digest = provenance.file_digest(Path(model_path))
    if saved.get("model_sha256") != digest:
        raise DomainMismatch(f"{path} was fitted for another model file than {model_path}; rebuild it")
    return Domain(**saved)


def beside(model_path: Path) -> Domain | None:
    """The domain stored beside a model file, or None when it has none."""
    path = Path(model_path).parent / DOMAIN_FILE
    return load(path, model_path) if path.exists() else None


def build(
    run_folder: Path, graph_set: GraphSet, k: int = K, quantile: float = QUANTILE, keep: bool = True
) -> tuple[Domain, pd.DataFrame]:
    """The domain of a finished run of the store (its ``model.pt`` and ``split.json``) from the graph set it was
    trained on, saved beside the model file unless ``keep`` is False; and its test crystals' ``id``, ``distance``,
    ``percentile`` and ``out_of_domain``."""
    folder = Path(run_folder)
    saved = model_file.load(folder / "model.pt")
    ids = graph_set.table["id"].astype(str).tolist()
    rows = {part: split_rows(folder / "split.json", ids, part) for part in ("train", "val", "test")}
    vectors = {part: crystal_vectors(saved.model, graph_set.graphs, r, saved.scaler)[0] for part, r in rows.items()}
    domain = fit(vectors["train"], vectors["val"], provenance.file_digest(folder / "model.pt"), k, quantile)
    if keep:
        save(domain, folder / DOMAIN_FILE)
    distance = domain.distances(vectors["test"])
    test = pd.DataFrame(
        {
            "id": [ids[i] for i in rows["test"]],
            "distance": distance,
            "percentile": domain.percentiles(distance),
            "out_of_domain": domain.flags(distance),
        }
    )
    return domain, test
