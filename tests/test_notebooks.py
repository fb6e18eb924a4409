"""Every notebook runs end to end in the smoke profile, into a temporary folder; its values are checked too."""

import json

import nbformat
import numpy as np
import pandas as pd
import pytest

from mlib import catalogue, model_file, reproduce
from mlib.data.mirror import mirror_file
from mlib.paths import REPO_ROOT
from mlib.training import regression_metrics
from tests.conftest import needs_mirror


def images(path) -> int:
    """PNG figures shown inline in an executed notebook."""
    nb = nbformat.read(path, as_version=4)
    return sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


def stderr(path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [o["text"] for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stderr"]


def recomputed(predictions: pd.DataFrame) -> dict[str, float]:
    test = predictions[predictions["split"] == "test"]
    return regression_metrics(test["true"].to_numpy(), test["pred"].to_numpy())


@pytest.mark.slow
@needs_mirror
@pytest.mark.notebooks
def test_smoke_profile_runs_every_notebook(tmp_path):
    assert reproduce.main(["--profile", "smoke", "--out", str(tmp_path)]) == 0
    root = tmp_path / "smoke"
    assert not (root / reproduce.STAGING).exists() or not any((root / reproduce.STAGING).iterdir())
    for nb in reproduce.notebooks():
        out = root / nb.stem
        record = json.loads((out / "provenance.json").read_text())
        assert record["profile"] == "smoke" and record["notebook"] == nb.stem and record["finished"] is True
        assert record["code"]["commit"] and record["packages"]["torch"].startswith("2.13")
        assert record["data_files"], "data digests recorded"
        pngs = [o["file"] for o in record["outputs"] if o["file"].endswith(".png")]
        assert images(out / nb.name) == len(pngs) > 0, "every saved figure is shown inline"
        assert stderr(out / nb.name) == [], "no warnings or progress-bar noise"
        for output in record["outputs"]:
            assert (out / output["file"]).stat().st_size > 0, output
    measured = pd.read_csv(root / "measured_time.csv").set_index("notebook")
    assert set(measured.index) == {nb.stem for nb in reproduce.notebooks()} and (measured["published"] == "yes").all()
    assert (measured["sittings logged"] == 1).all() and (measured["wall hours (all logged sittings)"] > 0).all()
    assert measured.loc["04b_models", "finished runs in the store"] > 0

    train, runs_02 = root / "02_train", root / "store" / "02_train" / "thermal" / "aflow" / "reference"
    splits = pd.read_csv(train / "thermal_splits.csv")
    assert list(splits["seed"]) == [0, 1]  # the smoke profile's seeds, one split each
    for row in splits.itertuples():
        again = recomputed(pd.read_csv(runs_02 / f"seed{row.seed}" / "predictions.csv"))
        assert row.mae == pytest.approx(again["mae"]) and row.pearson_r == pytest.approx(again["pearson_r"])
    saved = model_file.load(runs_02 / "seed0" / "model.pt")
    assert saved.info["target"] == catalogue.THERMAL_TARGET and saved.info["unit"] == "1/K"
    assert saved.spec.radius == 8.0 and saved.spec.tie_order == "pymatgen" and saved.info["data_digest"]
    assert saved.info["hyper"]["atom_features"] == "reference"
    for split in (0, 1):  # an ensemble on every split, its own run a member
        folder = runs_02 / "ensemble" / f"split{split}"
        manifest = json.loads((folder / "ensemble.json").read_text())
        assert len(manifest["members"]) == 2 and manifest["spread_scale"] > 0
        assert (folder / manifest["members"][split]).resolve() == (runs_02 / f"seed{split}" / "model.pt").resolve()
        assert all((folder / member).exists() for member in manifest["members"])
    listing = pd.read_csv(train / "thermal_predictor_predictions.csv")
    assert {"seed", "id", "split", "true", "pred"} <= set(listing.columns) and set(listing["seed"]) == {0, 1}
    per_split = pd.read_csv(train / "ensemble_metrics.csv").set_index("split seed")
    for split, rows in listing[listing["split"] == "test"].groupby("seed"):  # the listing recomputes the metrics
        again = recomputed(rows)
        assert per_split.loc[split, "ensemble mae"] == pytest.approx(again["mae"])
        assert per_split.loc[split, "ensemble pearson_r"] == pytest.approx(again["pearson_r"])
    assert len(pd.read_csv(train / "largest_errors.csv")) == 2 * 3
    others = pd.read_csv(train / "architecture_splits.csv")  # GCN and MEGNet on both splits, paired with CGCNN
    assert sorted(zip(others["model"], others["split seed"])) == [("GCN", 0), ("GCN", 1), ("MEGNet", 0), ("MEGNet", 1)]
    for split, rows in others.groupby("split seed"):  # every model of a split scored on the same test crystals
        cgcnn = pd.read_csv(runs_02 / f"seed{split}" / "predictions.csv")
        assert rows["test"].nunique() == 1 and 0 < rows["test"].iloc[0] <= (cgcnn["split"] == "test").sum()
    assert set(pd.read_csv(train / "architectures.csv")["verdict"]) <= {
        "lower MAE than CGCNN",
        "higher MAE than CGCNN",
        "within seed noise",
        "too few seeds to tell",
    }
    domains = pd.read_csv(train / "domain_check.csv")
    assert len(domains) == 2 + 1 + 2 and (domains["test"] > 0).all()  # two splits, the ensemble, held-out oxides
    assert domains["predictor"].str.startswith("held out of training: crystals with O (").sum() == 1
    assert all((m / "domain.pt").exists() for m in (runs_02 / "seed0", runs_02 / "ensemble" / "split0" / "seed1"))
    known = pd.read_csv(train / "known_compounds.csv")
    assert len(known) == 5 and known.filter(like="predicted").iloc[:, 0].notna().all()  # CIFs through mlib.predict
    choices = pd.read_csv(train / "training_choices.csv")
    assert list(choices["change"]) == ["best_by=val_mse", "atom_features=pymatgen"]

    sweep = pd.read_csv(root / "03_sweep" / "trials.csv")
    assert len(sweep[sweep["state"].isin(["COMPLETE", "PRUNED"])]) == 4  # n_trials of the smoke profile
    final = pd.read_csv(root / "03_sweep" / "final.csv")
    assert "paper's best" in set(final["configuration"]) and len(final) in (2, 3)
    assert len(pd.read_csv(root / "03_sweep" / "learning_curve.csv")) == 2  # curve_sizes of the smoke profile

    mapping = pd.read_csv(root / "03b_composition" / "crabnet_mapping.csv")
    assert mapping["all"].sum() == 4886  # every CrabNet formula is matched or counted by reason
    versus = pd.read_csv(root / "03b_composition" / "composition_vs_structure.csv")
    assert set(versus["input"]) == {"structure", "composition"} and len(versus) == 9
    beside = pd.read_csv(root / "03b_composition" / "beside_published.csv")
    assert len(beside) == 2 * 5 and (beside["common test formulas"] > 0).all()  # Roost, CrabNet, HotCrab, RF, ElemNet
    best_other = pd.read_csv(train / "architecture_lr.csv").query("chosen").sort_values("validation MAE (10^-6 1/K)")
    assert list(dict.fromkeys(beside["structure model"])) == ["CGCNN", best_other["model"].iloc[0]]  # 02's best other
    assert set(beside["verdict"]) == {"too few seeds to tell"}  # two seeds never decide
    assert len(pd.read_csv(root / "03b_composition" / "split_difficulty.csv")) == 2 + 2  # seeds + own_seeds

    embed = pd.read_csv(root / "04_embed" / "embeddings.csv")
    test_ids = json.loads((runs_02 / "seed0" / "split.json").read_text())["test"]
    assert sorted(embed["id"]) == sorted(test_ids)

    runs = pd.read_csv(root / "04b_models" / "runs.csv")
    assert len(runs) == 6 * 2 * 2 - 2 and runs["mae"].notna().all()  # 6 models x 2 targets x 2 seeds, M3GNet one
    assert set(pd.read_csv(root / "04b_models" / "metrics.csv").set_index("model")["seeds"].items()) >= {
        ("M3GNet", 1),
        ("GCN", 2),
    }
    for row in runs.itertuples():
        folder = root / "store" / "04b_models" / row.model / row.target / f"seed{row.seed}"
        assert row.mae == pytest.approx(recomputed(pd.read_csv(folder / "predictions.csv"))["mae"])
    beside = pd.read_csv(root / "04b_models" / "vs_paper.csv").set_index("target")
    assert set(beside.index) == {"formation energy", "band gap"} and (beside["seeds"] == 2).all()
    headline = pd.read_csv(root / "04b_models" / "all_crystals.csv").set_index("run")  # M3GNet beyond model_limits
    cgcnn = pd.read_csv(
        root / "store" / "04b_models" / "cgcnn" / "formation_energy_per_atom" / "seed0" / "predictions.csv"
    )
    m3gnet = headline.loc["M3GNet on every crystal"]
    assert m3gnet["trained on"] > runs.loc[runs["model"] == "m3gnet", "train"].max()  # more than its first 40
    assert m3gnet["test crystals"] == (cgcnn["split"] == "test").sum()  # on CGCNN's split

    table1 = pd.read_csv(root / "05_federated" / "table1.csv")
    assert len(table1) == 6 * 2 * 2 - 2 and table1["central MAE"].notna().all()  # models x algorithms x targets
    assert set(table1.loc[table1["model"] == "CGCNN", "algorithm"]) == {"FedAvg"}  # model_algorithms
    assert set(table1["unit"]) == {"eV/atom", "eV"} and (table1["MAE / central"] > 0).all()
    federated = pd.read_csv(root / "05_federated" / "federated_runs.csv")
    for row in federated.itertuples():
        folder = (
            root / "store" / "05_federated" / row.partition / row.algorithm / row.model / row.target / f"seed{row.seed}"
        )
        test = pd.read_csv(folder / "predictions.csv")
        assert row.mae == pytest.approx(np.abs(test["pred"] - test["true"]).mean(), rel=1e-5)

    grid = pd.read_csv(root / "05_federated" / "fedprox_runs.csv")
    assert len(grid) == 2 * 2 * 2 and (grid["drift"] > 0).all()  # 2 partitions x (FedAvg + 1 mu) x 2 seeds
    verdict = pd.read_csv(root / "05_federated" / "fedprox_verdict.csv")
    assert set(verdict["verdict"]) == {"too few seeds to tell"}  # two seeds never decide
    assert verdict["central MAE"].notna().all()  # the central baseline with as many epochs
    caption = (root / "05_federated" / "fedprox_verdict.md").read_text().splitlines()[0]
    assert "(first 50)" in caption and "50 crystals" in caption  # the grid's subset (fedprox_limit) is named

    curve = pd.read_csv(root / "06_transfer" / "runs.csv")
    assert set(curve["source"]) == {
        "scratch",
        "fedavg-formation_energy_per_atom",
        "fedavg-band_gap",
        "central-formation_energy_per_atom",
        "central-band_gap",
    }
    assert set(curve["model"]) == {"cgcnn", "gcn"}
    assert (curve.groupby(["model", "source", "mode", "n_train"]).size() == 2).all()  # two seeds at every point
    verdict = pd.read_csv(root / "06_transfer" / "pretraining_verdict.csv")
    assert set(verdict["verdict"]) == {"too few seeds to tell"}  # two seeds never decide
    on_splits = pd.read_csv(root / "06_transfer" / "on_02_splits_runs.csv")  # CGCNN and 02's best other model
    assert on_splits["model"].iloc[0] == "CGCNN" and on_splits["model"].nunique() == 2
    assert sorted(on_splits.loc[on_splits["model"] == "CGCNN", "split seed"]) == [0, 1]  # 02's splits
    scratch = pd.read_csv(root / "02_train" / "thermal_splits.csv").set_index("seed")
    cgcnn = on_splits[on_splits["model"] == "CGCNN"].set_index("split seed")
    assert cgcnn[f"scratch mae ({catalogue.target('thermal_expansion').axis_unit})"].to_numpy() == pytest.approx(
        scratch.loc[cgcnn.index, "mae"].to_numpy() / catalogue.target("thermal_expansion").scale
    )  # paired with 02's own runs, on their own test crystals

    experiment = pd.read_csv(root / "07_experiment" / "runs.csv")
    networks, baselines = experiment[experiment["source"] != "baseline"], experiment[experiment["source"] == "baseline"]
    assert len(networks) == 7 * 2 * 2  # GCN: scratch + (central, FedAvg) x (frozen, train, residual); 2 N x 2 splits
    assert len(baselines) == 3 * 2 * 2 and experiment["mae"].notna().all()
    tests = experiment.groupby(["split"])["test"].nunique()
    assert (tests == 1).all()  # every method and N of a split is scored on the same test crystals
    for row in networks[networks["target"] == "experiment"].itertuples():
        test = pd.read_csv(root / "store" / row.folder / "predictions.csv").query("split == 'test'")
        assert row.mae == pytest.approx(np.abs(test["pred"] - test["true"]).mean(), rel=1e-5)
    measured = set(pd.read_csv(mirror_file("expt-dhf/rxnnet-dhf.csv"))["material_id"])
    pretrain = json.loads(
        (root / "store" / "07_experiment" / "pretrain" / "central" / "gcn" / "seed0" / "split.json").read_text()
    )
    seen = {i for part in ("train", "val", "test") for i in pretrain[part]}
    assert seen and not seen & measured  # no experimental crystal in pre-training
    best = pd.read_csv(root / "07_experiment" / "best_model.csv")
    saved = model_file.load(REPO_ROOT / best["model file"].iloc[0])  # repository-relative, as a user types it
    assert saved.info["target"] == catalogue.EXPT_TARGET and saved.info["unit"] == "eV/atom"


@needs_mirror
def test_atom_features_agree_with_reference_layout():
    from mlib.data.reference import reference_atom_init
    from mlib.graphs.atom_features import agreement_with_reference

    agreement = {r["property"]: r["agreement"] for r in agreement_with_reference(reference_atom_init())}
    assert agreement["group"] == agreement["period"] == 1.0
    assert agreement["block"] >= 0.95 and agreement["valence_electrons"] >= 0.95
    assert agreement["first_ionization_energy"] >= 0.95
    assert min(agreement.values()) >= 0.25  # element data sources differ; the layout must not
