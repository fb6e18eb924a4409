"""04_embed: the crystal vectors of 02_train's thermal-expansion model (the paper's Figure 4), measured."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mlib import catalogue, datasets, embedding, model_file, plots, store_paths
from mlib.catalogue import THERMAL_TARGET
from mlib.outputs import Run
from mlib.params import EmbedParams
from mlib.study import nb02_train as train


def crystal_vectors(P: EmbedParams) -> tuple[pd.DataFrame, np.ndarray, str]:
    """The saved model's crystal vectors and predictions on the chosen crystals, and the caption fragment.

    The model is read with the graph specification it was trained with, so its inputs are rebuilt
    exactly as in training.
    """
    path = Path(P.model_path) if P.model_path else store_paths.thermal_model_file(P.store_dir, P.dataset)
    if not path.exists():
        raise FileNotFoundError(f"no trained model at {path}; run {train.NOTEBOOK} first (same profile and dataset)")
    saved = model_file.load(path)
    graphs = datasets.load_thermal(P.dataset, spec=saved.spec, workers=P.workers).graphs
    ids = graphs.table["id"].astype(str).tolist()
    rows = embedding.split_rows(path.with_name("split.json"), ids, P.crystals)
    vectors, pred = embedding.crystal_vectors(saved.model, graphs.graphs, rows, saved.scaler)
    frame = pd.DataFrame(
        {
            "id": graphs.table["id"].iloc[rows].to_numpy(),
            "formula": graphs.table["reduced_formula"].iloc[rows].to_numpy(),
            "true": graphs.table[THERMAL_TARGET].iloc[rows].to_numpy(),
            "pred": pred,
        }
    )
    return frame, vectors, f"{graphs.name}, {P.crystals} crystals ({len(rows):,})"


def maps(P: EmbedParams, run: Run, frame: pd.DataFrame, vectors: np.ndarray, where: str) -> pd.DataFrame:
    """t-SNE and PCA maps of the vectors, coloured by the prediction, with landmarks labelled."""
    for method in ("tsne", "pca"):
        xy = embedding.reduce(vectors, method, P.perplexity, P.seed)
        frame[f"{method}_x"], frame[f"{method}_y"] = xy[:, 0], xy[:, 1]
    landmarks = embedding.landmarks(frame, P.n_labels)
    info = catalogue.target(THERMAL_TARGET)
    run.save_table(
        frame,
        "embeddings",
        f"Crystal vectors in 2-D (t-SNE, PCA): {where}",
        markdown=False,
        finding=f"{len(frame):,} crystals, each with its label, prediction and place on both maps below.",
    )
    high, low = frame.loc[frame["pred"].idxmax()], frame.loc[frame["pred"].idxmin()]
    for method, name in (("tsne", "t-SNE"), ("pca", "PCA")):
        rho = embedding.distance_spearman(frame[[f"{method}_x", f"{method}_y"]].to_numpy(), frame["pred"].to_numpy())
        fig = plots.embedding_map(
            frame,
            landmarks,
            f"{method}_x",
            f"{method}_y",
            f"{name} of CGCNN crystal vectors, {where}",
            catalogue.target(THERMAL_TARGET),
        )
        run.save_figure(
            fig,
            f"{method}_map",
            f"{name} map of v_c coloured by predicted thermal expansion, {where}",
            finding=f"Spearman rho between distance on the {name} map and difference of predicted values: {rho:.2f} "
            f"({'nearby crystals tend to expand alike' if rho > 0.1 else 'the map hardly orders the property'}); "
            f"highest predicted {high['formula']} ({high['pred'] / info.scale:.3g} {info.axis_unit}), lowest "
            f"{low['formula']} ({low['pred'] / info.scale:.3g}).",
        )
    return landmarks[["formula", "why", "true", "pred"]]


def quality(P: EmbedParams, run: Run, frame: pd.DataFrame, vectors: np.ndarray, where: str) -> pd.DataFrame:
    """How well the vectors and maps order the predicted property: Spearman rho and kNN R2."""
    pred = frame["pred"].to_numpy()
    knn = f"kNN R2 of predicted value (k={P.knn_k}, 5-fold CV)"
    rows = [
        {
            "measure": "Spearman rho: v_c distance vs difference of predicted values",
            "space": f"v_c ({vectors.shape[1]}-dim)",
            "value": embedding.distance_spearman(vectors, pred, seed=P.seed),
            "std": float("nan"),
        }
    ]
    for method in ("tsne", "pca"):
        mean, std = embedding.knn_r2(frame[[f"{method}_x", f"{method}_y"]].to_numpy(), pred, P.knn_k, seed=P.seed)
        rows.append({"measure": knn, "space": f"{method} map", "value": mean, "std": std})
    mean, std = embedding.knn_r2(vectors, pred, P.knn_k, seed=P.seed)
    rows.append({"measure": knn, "space": "v_c (full)", "value": mean, "std": std})
    table = pd.DataFrame(rows)
    full, tsne, pca = (table.loc[table["space"] == s, "value"].iloc[0] for s in ("v_c (full)", "tsne map", "pca map"))
    return run.save_table(
        table,
        "embedding_quality",
        f"How the crystal vectors order predicted thermal expansion: {where}",
        finding=f"Neighbours in the full crystal vectors predict a crystal's value with kNN R2 {full:.3f}; the 2-D "
        f"t-SNE map keeps {tsne:.3f} and PCA {pca:.3f}: "
        + ("t-SNE keeps the ordering far better than PCA." if tsne - pca > 0.1 else "both maps keep it alike."),
    )
