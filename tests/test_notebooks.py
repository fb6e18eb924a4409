"""Every notebook runs end to end in the smoke profile, into a temporary folder."""
import json

import pytest

from mlib import reproduce
from tests.conftest import needs_mirror


@needs_mirror
@pytest.mark.notebooks
def test_smoke_profile_runs_every_notebook(tmp_path):
    assert reproduce.main(["--profile", "smoke", "--out", str(tmp_path)]) == 0
    for nb in reproduce.notebooks():
        out = tmp_path / "smoke" / nb.stem
        assert (out / nb.name).exists()
        record = json.loads((out / "provenance.json").read_text())
        assert record["profile"] == "smoke" and record["notebook"] == nb.stem
        assert record["git"]["commit"] and record["packages"]["torch"].startswith("2.13")
        assert record["data_files"], "data digests recorded"
        for output in record["outputs"]:
            assert (out / output["file"]).stat().st_size > 0, output
    data = tmp_path / "smoke" / "01_data"
    assert {"agl_index_counts.csv", "thermal_steps.csv", "target_histogram.png", "graph_summary.csv",
            "atom_feature_agreement.csv"} <= {p.name for p in data.iterdir()}
    train = tmp_path / "smoke" / "02_train"
    assert {"thermal_parity.png", "thermal_learning_curves.png", "thermal_metrics.csv", "thermal_predictions.csv",
            "mp_metrics.csv"} <= {p.name for p in train.iterdir()}
    assert (train / "thermal" / "model.pt").exists() and (train / "thermal" / "split.json").exists()
    sweep = tmp_path / "smoke" / "03_sweep"
    assert {"trials.csv", "top10.csv", "best_config.csv", "cost.csv", "val_r_by_param.png",
            "heatmap_hidden_lr.png"} <= {p.name for p in sweep.iterdir()}
    embed = tmp_path / "smoke" / "04_embed"
    assert {"embeddings.csv", "tsne_map.png", "pca_map.png", "embedding_quality.csv"} <= {p.name for p in embed.iterdir()}
    models = tmp_path / "smoke" / "04b_models"
    assert {"metrics.csv", "runs.csv", "parity.png", "mae_bars.png", "predictions_m3gnet.csv",
            "predictions_gcn.csv"} <= {p.name for p in models.iterdir()}
    runs = __import__("pandas").read_csv(models / "runs.csv")
    assert len(runs) == 5 * 2 * 2 and runs["mae"].notna().all()  # 5 models x 2 targets x 2 seeds
    federated = tmp_path / "smoke" / "05_federated"
    assert {"table1.csv", "vs_paper.csv", "convergence.png", "partitions.csv", "partitions.png", "clients.csv",
            "faults.csv"} <= {p.name for p in federated.iterdir()}
    table1 = __import__("pandas").read_csv(federated / "table1.csv")
    assert len(table1) == 5 * 2 * 2 and table1["central MAE"].notna().all()  # models x algorithms x targets
    transfer = tmp_path / "smoke" / "06_transfer"
    assert {"learning_curve.csv", "learning_curve.png", "pretraining_gain.csv"} <= {p.name for p in transfer.iterdir()}


@needs_mirror
def test_atom_features_agree_with_reference_layout():
    from mlib.datasets import reference_atom_init
    from mlib.graphs.atom_features import agreement_with_reference

    agreement = {r["property"]: r["agreement"] for r in agreement_with_reference(reference_atom_init())}
    assert agreement["group"] == agreement["period"] == 1.0
    assert agreement["block"] >= 0.95 and agreement["valence_electrons"] >= 0.95
    assert agreement["first_ionization_energy"] >= 0.95
    assert min(agreement.values()) >= 0.25  # element data sources differ; the layout must not
