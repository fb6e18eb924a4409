"""Crystal embeddings of a trained model: pooled vectors v_c, 2-D maps, and how well they order the target.

The CGCNN paper's Figure 4 shows a t-SNE map of v_c coloured by the prediction and reads it
qualitatively; here the claim is measured: the Spearman correlation between distances in v_c space
and differences in prediction, and the cross-validated R2 of a k-nearest-neighbour regressor on the map.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.model_selection import KFold, cross_val_score
from sklearn.neighbors import KNeighborsRegressor
from torch import nn

from mlib.scaling import Standardizer
from mlib.training import make_batches


def split_rows(split_path: Path, ids: list[str], part: str) -> np.ndarray:
    """Row numbers of a saved split's part (``test``, ``val``, ``train``) or of every crystal (``all``)."""
    if part == "all":
        return np.arange(len(ids))
    wanted = set(json.loads(Path(split_path).read_text())[part])
    rows = np.array([i for i, crystal in enumerate(ids) if crystal in wanted])
    if len(rows) != len(wanted):
        raise ValueError(f"{len(wanted) - len(rows)} crystals of the saved {part} split are not in this data set")
    return rows


@torch.no_grad()
def crystal_vectors(
    model: nn.Module, graphs: list, rows: np.ndarray, scaler: Standardizer, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled crystal vectors v_c and predictions (original units) for ``rows``, in that order."""
    model.eval()
    vectors, preds = [], []
    for graph, _, _ in make_batches(graphs, torch.zeros(len(graphs)), rows, batch_size):  # targets unused here
        vectors.append(model.embed(graph).numpy())
        preds.append(scaler.decode(model(graph)).numpy())
    return np.concatenate(vectors), np.concatenate(preds)


def reduce(vectors: np.ndarray, method: str = "tsne", perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """2-D map of the vectors: t-SNE (scikit-learn, PCA initialisation) or PCA."""
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(vectors)
    if method != "tsne":
        raise ValueError(f"unknown reduction {method!r}; choose 'tsne' or 'pca'")
    perplexity = min(perplexity, (len(vectors) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(vectors)


def distance_spearman(vectors: np.ndarray, values: np.ndarray, max_pairs: int = 200_000, seed: int = 0) -> float:
    """Spearman rho between pairwise distances in v_c space and absolute differences of ``values``."""
    rng = np.random.default_rng(seed)
    n = len(vectors)
    i, j = np.triu_indices(n, k=1)
    if len(i) > max_pairs:
        keep = rng.choice(len(i), max_pairs, replace=False)
        i, j = i[keep], j[keep]
    distances = np.linalg.norm(vectors[i] - vectors[j], axis=1)
    return float(stats.spearmanr(distances, np.abs(values[i] - values[j]))[0])


def knn_r2(points: np.ndarray, values: np.ndarray, k: int = 10, folds: int = 5, seed: int = 0) -> tuple[float, float]:
    """Cross-validated R2 (mean, std) of a k-nearest-neighbour regressor of ``values`` on ``points``."""
    k = min(k, len(points) - -(-len(points) // folds) - 1)  # at most the smallest training fold minus one
    scores = cross_val_score(
        KNeighborsRegressor(n_neighbors=k),
        points,
        values,
        scoring="r2",
        cv=KFold(folds, shuffle=True, random_state=seed),
    )
    return float(scores.mean()), float(scores.std())


def landmarks(frame: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    """Points to label on a map: the n lowest and highest predictions, and negative thermal expansion."""
    order = frame.sort_values("pred")
    picked = pd.concat(
        [
            order.head(n).assign(why="lowest predicted"),
            order.tail(n).assign(why="highest predicted"),
            frame[frame["true"] < 0].assign(why="negative thermal expansion"),
        ]
    )
    return picked.drop_duplicates("id")
