"""Fine-tuning a pre-trained encoder: weights load, a frozen encoder stays put, splits, the verdict."""

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure

from mlib.encoders import EncoderMismatch, head_keys, load_encoder
from mlib.graphs.featurize import featurize
from mlib.models.registry import build_model, graph_spec
from mlib.params import FineTune, ParameterError, TrainConfig, build
from mlib.study.nb06_transfer import (
    federated_vs_central,
    gains,
    pretraining_data,
    where_pretraining_stops_helping,
)
from mlib.training import Trainer, few_shot_split, fit_regressor


def graph_set(model: str, n: int = 24):
    rows = []
    for k in range(n):
        a, b = ["Li", "Na", "K", "Rb"][k % 4], ["F", "Cl", "Br", "I", "O", "S"][k % 6]
        s = Structure(Lattice.cubic(3.0 + 0.05 * k), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])
        rows.append(
            {
                "id": f"c{k}",
                "source": {"lattice": s.lattice.matrix, "species": [a, b], "frac_coords": s.frac_coords},
                "reduced_formula": s.composition.reduced_formula,
                "y": np.sin(k) + 0.1 * k,
            }
        )
    return featurize(pd.DataFrame(rows), "salts", graph_spec(model), cache=False)


@pytest.fixture(scope="module", params=["gcn", "megnet"])
def pretrained(request, tmp_path_factory):
    name = request.param
    folder = tmp_path_factory.mktemp(name)
    hyper = {"hidden": 16} if name == "gcn" else {"nblocks": 1}
    fit_regressor(
        lambda: build_model(name, **hyper),
        graph_set(name),
        "y",
        TrainConfig(epochs=2, batch_size=8),
        folder,
        show=False,
    )
    return name, hyper, folder / "model.pt"


def test_encoder_weights_load_into_a_new_model_with_a_fresh_head(pretrained):
    name, hyper, path = pretrained
    torch.manual_seed(123)
    model = build_model(name, **hyper)
    head_before = {k: v.clone() for k, v in model.state_dict().items() if k in head_keys(model)}
    loaded = load_encoder(model, path)
    saved = torch.load(path, weights_only=False)["state"]
    assert loaded and not set(loaded) & head_keys(model)
    for key in loaded:
        torch.testing.assert_close(model.state_dict()[key], saved[key])
    for key, value in head_before.items():
        torch.testing.assert_close(model.state_dict()[key], value)  # the head is new, not the pre-trained one


def test_captions_name_the_crystals_the_encoders_were_pre_trained_on(pretrained):
    name, _, path = pretrained
    store_root = path.parent.parent
    sources = {name: {"central-y": str(path.relative_to(store_root))}}
    assert pretraining_data(store_root, sources) == "salts, 24 crystals"  # from the model file and its run


def test_a_frozen_encoder_stays_unchanged_after_training(pretrained, tmp_path):
    name, hyper, path = pretrained

    def build():
        model = build_model(name, **hyper)
        load_encoder(model, path)
        return model

    saved = torch.load(path, weights_only=False)["state"]
    result = fit_regressor(
        build,
        graph_set(name),
        "y",
        TrainConfig(epochs=3, batch_size=8, lr=0.01),
        tmp_path,
        show=False,
        fine_tune=FineTune("frozen"),
    )
    model = result.trainer.model
    heads = head_keys(model)
    state = model.state_dict()
    encoder = [k for k in state if k not in heads]
    assert encoder
    for key in encoder:  # weights and batch-norm statistics
        torch.testing.assert_close(state[key], saved[key])
    assert any(not torch.equal(state[k], saved[k]) for k in heads if k in saved)


def test_a_frozen_encoder_trains_its_head_on_stored_crystal_vectors_with_the_same_numbers(
    pretrained, tmp_path, monkeypatch
):
    name, hyper, path = pretrained

    def frozen_run(folder):
        def build():
            model = build_model(name, **hyper)
            load_encoder(model, path)
            return model

        config = TrainConfig(epochs=3, batch_size=8, lr=0.01)
        return fit_regressor(build, graph_set(name), "y", config, folder, show=False, fine_tune=FineTune("frozen"))

    fast = frozen_run(tmp_path / "head-only")
    assert fast.trainer.head_only and fast.trainer.vectors is not None
    monkeypatch.setattr(Trainer, "store_vectors", False)
    whole = frozen_run(tmp_path / "whole-model")
    assert whole.trainer.vectors is None
    pd.testing.assert_frame_equal(fast.history, whole.history, rtol=1e-4)
    pd.testing.assert_frame_equal(fast.predictions, whole.predictions, rtol=1e-4)


def test_training_the_encoder_uses_the_scaled_learning_rate(pretrained, tmp_path):
    name, hyper, path = pretrained
    result = fit_regressor(
        lambda: build_model(name, **hyper),
        graph_set(name),
        "y",
        TrainConfig(epochs=1, lr=0.01),
        tmp_path,
        show=False,
        fine_tune=FineTune("train", 0.1),
    )
    assert [g["lr"] for g in result.trainer.optimizer.param_groups] == [0.01, pytest.approx(0.001)]


def test_encoder_of_another_architecture_is_refused(pretrained):
    name, hyper, path = pretrained
    other = {"hidden": 32} if name == "gcn" else {"nblocks": 2}
    with pytest.raises(EncoderMismatch, match="holds"):
        load_encoder(build_model(name, **other), path)


def test_every_size_shares_the_test_split():
    full = few_shot_split(500, None, seed=0)
    for n, seed in ((50, 0), (50, 1), (200, 2)):
        split = few_shot_split(500, n, seed)
        assert np.array_equal(split["test"], full["test"])
        assert len(split["train"]) == n and set(split["train"]) <= set(full["train"])
        assert set(split["val"]) <= set(full["val"]) and len(split["val"]) == max(10, n // 3)
    assert not np.array_equal(few_shot_split(500, 50, 0)["train"], few_shot_split(500, 50, 1)["train"])


def curve_runs(points: dict[str, dict[int, float]], seeds=(0, 1, 2), spread: float = 0.01) -> pd.DataFrame:
    """Runs of one model: source -> {N: mean MAE}, each seed offset by the same amount for every source."""
    rows = []
    for source, curve in points.items():
        pretraining, _, target = source.partition("-")
        for n, mae in curve.items():
            for seed in seeds:
                rows.append(
                    {
                        "model": "gcn",
                        "source": source,
                        "pretraining": pretraining,
                        "pretrain_target": target or None,
                        "mode": "scratch" if source == "scratch" else "train",
                        "n_train": n,
                        "seed": seed,
                        "mae": mae + spread * (seed - 1) + (0.002 * seed**2 if source != "scratch" else 0),
                    }
                )
    return pd.DataFrame(rows)


def test_verdict_on_where_pretraining_stops_helping():
    runs = curve_runs(
        {
            "scratch": {50: 1.0, 200: 0.8, 1000: 0.5},
            "fedavg-band_gap": {50: 0.6, 200: 0.7, 1000: 0.55},
            "central-band_gap": {50: 1.1, 200: 0.9, 1000: 0.6},
        }
    )
    table = gains(runs)
    assert len(table) == 6 and (table["seeds"] == 3).all()
    verdict = where_pretraining_stops_helping(table).set_index("source")
    assert verdict.loc["FedAvg on band gap", "verdict"] == "better up to N = 200, not from N = 1000 on"
    assert verdict.loc["FedAvg on band gap", "better beyond noise at N"] == "50, 200"
    assert verdict.loc["FedAvg on band gap", "worse beyond noise at N"] == "1000"  # harm reads as harm
    assert verdict.loc["FedAvg on band gap", "at N"] == 50
    assert verdict.loc["FedAvg on band gap", "best relative MAE gain"] == pytest.approx(1 - 0.6 / 1.0, abs=0.01)
    assert verdict.loc["central on band gap", "verdict"] == "worse than scratch at every N"
    assert set(table.loc[table["source"] == "central on band gap", "verdict"]) == {"worse than scratch"}
    assert verdict.index[0] == "FedAvg on band gap"  # ranked by mean gain over N


def test_a_gain_inside_seed_noise_does_not_count():
    rng = np.random.default_rng(0)
    runs = curve_runs({"scratch": {50: 1.0, 500: 1.0}, "fedavg-band_gap": {50: 0.99, 500: 0.5}}, spread=0.0)
    runs["mae"] += rng.normal(0, 0.1, len(runs)) * (runs["n_train"] == 50)  # unpaired noise at N = 50 only
    verdict = where_pretraining_stops_helping(gains(runs)).set_index("source")
    assert verdict.loc["FedAvg on band gap", "better beyond noise at N"] == "500"
    assert verdict.loc["FedAvg on band gap", "verdict"] == "better up to N = 500 (the largest)"


def test_two_seeds_never_decide():
    runs = curve_runs({"scratch": {50: 1.0}, "fedavg-band_gap": {50: 0.5}}, seeds=(0, 1))
    verdict = where_pretraining_stops_helping(gains(runs)).set_index("source")
    assert verdict.loc["FedAvg on band gap", "verdict"] == "too few seeds to tell"


def test_federated_against_central_is_paired_by_seed():
    runs = curve_runs({"scratch": {50: 1.0}, "fedavg-band_gap": {50: 0.6}, "central-band_gap": {50: 0.8}})
    table = federated_vs_central(runs)
    assert len(table) == 1
    row = table.iloc[0]
    assert row["federated"] == "FedAvg" and row["verdict"] == "federated better"
    assert row["relative MAE gain"] == pytest.approx(1 - 0.6 / 0.8, abs=0.01)


def test_transfer_parameters_fail_fast():
    build("06_transfer", {"out_dir": "x"})
    with pytest.raises(ParameterError, match="sizes"):
        build("06_transfer", {"out_dir": "x", "sizes": [1]})
    with pytest.raises(ParameterError, match="unknown mode"):
        build("06_transfer", {"out_dir": "x", "modes": ["half"]})


def test_many_paired_tests_read_together_are_corrected_by_benjamini_hochberg():
    from mlib.outputs import benjamini_hochberg, verdicts

    q = benjamini_hochberg([0.01, 0.04, 0.03, float("nan"), 0.2])  # four tests; by hand: p * 4 / rank, then min up
    np.testing.assert_allclose(q, [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, np.nan, 0.2])
    assert verdicts([0.2, -0.3, 0.1, 0.5, 0.4], q, "better", "worse") == [
        "better",
        "within seed noise",  # p 0.04 alone would pass; among four tests it does not
        "within seed noise",
        "too few seeds to tell",
        "within seed noise",
    ]
    assert verdicts([-0.5], [0.001], "better", "worse") == ["worse"]
