"""CGCNN: the convolution against a hand computation, invariances, determinism, checkpoints."""

import dgl
import numpy as np
import pytest
import torch
from pymatgen.core import Structure

from mlib.graphs.neighbors import GraphSpec
from mlib.models.cgcnn import CGCNN, CGCNNConv, GaussianDistance
from mlib.params import TrainConfig
from mlib.training import Trainer, TrainingDiverged, seed_everything, split_indices
from tests.conftest import DISTORTED, crystal_graph, toy_data


def softplus(x):
    return np.log1p(np.exp(x))


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_convolution_matches_hand_computation_on_two_atoms():
    torch.manual_seed(0)
    conv = CGCNNConv(hidden=2, edge_dim=1).eval()  # eval: batch norm uses running stats (0, 1)
    graph = dgl.graph((torch.tensor([1, 0]), torch.tensor([0, 1])))  # j -> i both ways
    v = torch.tensor([[0.5, -1.0], [2.0, 0.3]])
    u = torch.tensor([[0.7], [0.7]])
    out = conv(graph, v, u).detach().numpy()
    W, b = conv.full.weight.detach().numpy(), conv.full.bias.detach().numpy()
    eps = conv.bn_gate.eps
    expected = []
    for i, j in ((0, 1), (1, 0)):
        z = np.concatenate([v[i].numpy(), v[j].numpy(), u[0].numpy()])
        gated = (W @ z + b) / np.sqrt(1 + eps)
        message = sigmoid(gated[:2]) * softplus(gated[2:])
        expected.append(softplus(v[i].numpy() + message / np.sqrt(1 + eps)))
    np.testing.assert_allclose(out, np.array(expected), rtol=1e-5)


def test_prediction_is_invariant_to_atom_order():
    torch.manual_seed(0)
    model = CGCNN(hidden=16, n_conv=2).eval()
    order = (4, 2, 0, 3, 1)
    permuted = Structure(
        DISTORTED.lattice, [DISTORTED[i].species_string for i in order], [DISTORTED[i].frac_coords for i in order]
    )
    a, b = model(crystal_graph(DISTORTED)), model(crystal_graph(permuted))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert model.embed(crystal_graph(DISTORTED)).shape == (1, 16)


def test_gaussian_expansion_follows_cgcnn():
    g = GaussianDistance()
    assert g.dim == 41
    assert torch.isclose(g(torch.tensor([2.0]))[0, 10], torch.tensor(1.0))


def train(tmp_path, epochs: int, resume: bool = False):
    seed_everything(0)
    graphs, y = toy_data()
    trainer = Trainer(
        CGCNN(hidden=8, n_conv=2),
        graphs,
        y,
        split_indices(len(graphs), 0),
        TrainConfig(epochs=epochs, batch_size=4, lr=0.01),
        tmp_path,
    )
    if resume:
        assert trainer.resume()
    return trainer, trainer.fit(show=False)


def test_training_is_deterministic(tmp_path):
    _, h1 = train(tmp_path / "a", 3)
    _, h2 = train(tmp_path / "b", 3)
    assert h1.equals(h2)


def test_fit_regressor_is_seeded_whatever_the_global_rng_state(tmp_path):
    import pandas as pd

    from mlib.graphs.featurize import GraphSet
    from mlib.training import fit_regressor

    graphs, y = toy_data()
    data = GraphSet(
        "toy",
        graphs,
        pd.DataFrame({"id": [str(i) for i in range(len(y))], "y": y.numpy(), "reduced_formula": "NaCl"}),
        GraphSpec(),
    )
    histories = []
    for run in range(2):
        torch.rand(run + 1)  # a different global RNG state before each run
        result = fit_regressor(
            lambda: CGCNN(hidden=8, n_conv=2),
            data,
            "y",
            TrainConfig(epochs=2, batch_size=4),
            tmp_path / str(run),
            resume=False,
        )
        histories.append(result.history)
    assert histories[0].equals(histories[1])


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path):
    full, h_full = train(tmp_path / "full", 4)
    train(tmp_path / "cut", 2)  # "interrupted" after 2 epochs
    resumed, h_resumed = train(tmp_path / "cut", 4, resume=True)
    np.testing.assert_allclose(h_resumed["val_mse"], h_full["val_mse"], rtol=1e-6)
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(p, q)
    assert resumed.timed_epochs == 4 and resumed.seconds > 0  # the first sitting's epochs are counted too


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path):
    trainer, _ = train(tmp_path, 1)
    before = (tmp_path / "last.pt").read_bytes()
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    trainer.config = TrainConfig(epochs=2, batch_size=4, lr=0.01)
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        trainer.fit(show=False)
    assert (tmp_path / "last.pt").read_bytes() == before


@pytest.mark.parametrize(
    "kwargs, message", [({"batch_size": 0}, "batch_size"), ({"lr": 0.0}, "lr"), ({"epochs": -1}, "epochs")]
)
def test_bad_training_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_too_small_data_set_for_the_split():
    with pytest.raises(ValueError, match="too few"):
        split_indices(3, 0)


@pytest.mark.parametrize("train", [True, False])
def test_fast_convolution_equals_the_equation_as_written(train):
    """z W = v_i W_i + v_j W_j + u_ij W_u: the fast path gives the literal concatenation's values and gradients."""
    import dgl as dgl_module

    torch.manual_seed(0)
    graph = dgl_module.batch([crystal_graph(DISTORTED), *toy_data(5)[0]])
    model = CGCNN(hidden=16, n_conv=1).train(train)
    conv = model.convs[0]
    v = model.embedding(graph.ndata["z"]).detach().requires_grad_(True)
    u = model.gaussian(graph.edata["dist"])
    fast, literal = conv(graph, v, u), conv.forward_literal(graph, v, u)
    torch.testing.assert_close(fast, literal, rtol=1e-5, atol=1e-5)
    (g_fast,) = torch.autograd.grad(fast.sum(), v)
    (g_literal,) = torch.autograd.grad(literal.sum(), v)
    torch.testing.assert_close(g_fast, g_literal, rtol=1e-4, atol=1e-5)


def test_batches_are_drawn_anew_every_epoch_and_seeded(tmp_path):
    graphs, y = toy_data()
    trainer = Trainer(
        CGCNN(hidden=8, n_conv=2),
        graphs,
        y,
        split_indices(len(graphs), 0),
        TrainConfig(epochs=2, batch_size=4),
        tmp_path,
    )
    first = [tuple(rows) for _, _, rows in trainer.epoch_batches()]
    assert first == [tuple(rows) for _, _, rows in trainer.epoch_batches()]  # same epoch, same batches
    trainer.epoch = 1
    assert first != [tuple(rows) for _, _, rows in trainer.epoch_batches()]
    assert sorted(r for b in first for r in b) == sorted(trainer.split["train"])


def test_step_schedule_and_best_epoch_by_mae(tmp_path):
    import mlib.training as training

    graphs, y = toy_data()
    original = training.LR_STEP_EPOCH
    training.LR_STEP_EPOCH = 2  # the reference steps at epoch 100; 2 keeps the test short
    try:
        trainer = Trainer(
            CGCNN(hidden=8, n_conv=2),
            graphs,
            y,
            split_indices(len(graphs), 0),
            TrainConfig(epochs=4, batch_size=4, lr=0.01, lr_schedule="step", best_by="val_mae"),
            tmp_path,
        )
        history = trainer.fit(show=False)
    finally:
        training.LR_STEP_EPOCH = original
    assert list(history["lr"]) == pytest.approx([0.01, 0.01, 0.001, 0.001])  # epochs 3 and 4 at lr / 10
    assert trainer.best_val == pytest.approx(history["val_mae"].min())
    assert (history["val_mae"] > 0).all() and "train_mae" in history


def test_one_run_measures_the_test_metrics_at_every_criterions_best_epoch(tmp_path):
    """The criterion does not change training: a run kept by val_mse reports what a val_mae run keeps, and back."""
    from mlib.training import fit_regressor
    from tests.test_store import toy_set

    data = toy_set()
    results = {
        best_by: fit_regressor(
            lambda: CGCNN(hidden=8, n_conv=2),
            data,
            "y",
            TrainConfig(epochs=6, batch_size=4, lr=0.01, best_by=best_by),
            tmp_path / best_by,
            show=False,
        )
        for best_by in ("val_mse", "val_mae")
    }
    for best_by, result in results.items():
        assert result.by_criterion[best_by] == {**result.metrics, "epoch": result.by_criterion[best_by]["epoch"]}
        for other in results.values():
            assert other.by_criterion[best_by] == pytest.approx(result.by_criterion[best_by])
