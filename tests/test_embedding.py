"""Crystal embeddings: shapes, mean pooling over atoms, reproducible maps, the landmark picks."""

import dgl
import numpy as np
import pandas as pd
import torch

from mlib import embedding
from mlib.models.cgcnn import CGCNN
from mlib.scaling import Standardizer
from tests.conftest import DISTORTED, crystal_graph, toy_data


def test_crystal_vectors_have_one_row_per_crystal():
    torch.manual_seed(0)
    graphs, _ = toy_data(10)
    vectors, pred = embedding.crystal_vectors(CGCNN(hidden=8, n_conv=2), graphs, np.arange(10), Standardizer(0, 1))
    assert vectors.shape == (10, 8) and pred.shape == (10,)


def test_pooling_is_the_mean_over_atoms():
    torch.manual_seed(0)
    model = CGCNN(hidden=8, n_conv=2).eval()
    graphs = [crystal_graph(DISTORTED), toy_data(1)[0][0]]
    batch = dgl.batch(graphs)
    atoms = model.atom_vectors(batch)
    sizes = [g.num_nodes() for g in graphs]
    expected = torch.stack([chunk.mean(dim=0) for chunk in torch.split(atoms, sizes)])
    torch.testing.assert_close(model.embed(batch), expected)


def test_maps_are_reproducible_and_pca_is_the_projection_on_the_top_two_axes():
    vectors = np.random.default_rng(0).normal(size=(60, 8)) * np.array([5.0, 3.0, 1, 1, 1, 1, 1, 1])
    first = embedding.reduce(vectors, "tsne", 10, seed=1)
    np.testing.assert_array_equal(first, embedding.reduce(vectors, "tsne", 10, seed=1))
    centred = vectors - vectors.mean(axis=0)
    axes = np.linalg.svd(centred, full_matrices=False)[2][:2]  # by hand: the two directions of largest variance
    np.testing.assert_allclose(np.abs(embedding.reduce(vectors, "pca")), np.abs(centred @ axes.T), atol=1e-8)


def test_order_measures_see_structure():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(200, 2))
    values = points[:, 0] * 3
    assert embedding.distance_spearman(points, values) > 0.3
    assert embedding.knn_r2(points, values)[0] > 0.9
    assert embedding.knn_r2(points, rng.normal(size=200))[0] < 0.2


def test_landmarks_pick_extremes_and_negative_expansion():
    frame = pd.DataFrame(
        {"id": list("abcdef"), "formula": list("ABCDEF"), "true": [1, 2, -1, 4, 5, 6], "pred": [1, 2, 3, 4, 5, 6]}
    )
    picked = embedding.landmarks(frame, n=1)
    assert dict(zip(picked["id"], picked["why"])) == {
        "a": "lowest predicted",
        "f": "highest predicted",
        "c": "negative thermal expansion",
    }
