"""The domain check: distances to the training crystals' vectors, read against the validation crystals', stored
beside the model file it belongs to, and printed by mlib.predict."""

import numpy as np
import pandas as pd
import pytest

from mlib import domain, predict
from mlib.catalogue import THERMAL_TARGET
from mlib.graphs.featurize import GraphSet
from mlib.graphs.neighbors import GraphSpec
from mlib.models.registry import build_model
from mlib.params import TrainConfig
from mlib.training import fit_regressor
from tests.conftest import toy_data


def test_a_vector_far_from_the_training_crystals_is_flagged_and_one_among_them_is_not():
    rng = np.random.default_rng(0)
    train, val = rng.normal(size=(400, 8)), rng.normal(size=(200, 8))
    fitted = domain.fit(train, val, "digest", k=5, quantile=0.95)
    assert np.all(np.diff(fitted.reference.numpy()) >= 0) and len(fitted.reference) == 200
    inside, outside = rng.normal(size=(1, 8)) * 0.1, np.full((1, 8), 8.0)
    d = fitted.distances(np.vstack([inside, outside]))
    assert d[0] < d[1] and fitted.flags(d).tolist() == [False, True]
    assert fitted.percentiles(d)[1] == 100.0 and 0.0 <= fitted.percentiles(d)[0] < 50.0
    assert fitted.flags(fitted.reference.numpy()).mean() == pytest.approx(0.05, abs=0.01)  # its quantile
    own = fitted.distances(train[:3], exclude_self=True)  # a training vector's zero distance to itself is left out
    assert (own > 0).all() and (fitted.distances(train[:3]) < own).all()
    with pytest.raises(ValueError, match="more than k = 5"):
        domain.fit(train[:5], val, "digest")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    graphs, y = toy_data()
    table = pd.DataFrame(
        {"id": [f"c{i}" for i in range(len(y))], THERMAL_TARGET: y.numpy() * 1e-5, "reduced_formula": "NaCl"}
    )
    graph_set = GraphSet("toy", graphs, table, GraphSpec(), source_digest="toy")
    folder = tmp_path_factory.mktemp("domain") / "run"
    fit_regressor(
        lambda: build_model("cgcnn", hidden=8, n_conv=2),
        graph_set,
        THERMAL_TARGET,
        TrainConfig(epochs=2, batch_size=4),
        folder,
        show=False,
    )
    return folder, graph_set


def test_the_domain_is_stored_beside_its_model_file_and_refused_beside_another(run, tmp_path):
    folder, graph_set = run
    built, test = domain.build(folder, graph_set, k=2)
    assert list(test.columns) == ["id", "distance", "percentile", "out_of_domain"] and len(test) > 0
    loaded = domain.beside(folder / "model.pt")
    assert loaded is not None and loaded.k == 2 and np.allclose(loaded.reference.numpy(), built.reference.numpy())
    other = tmp_path / "model.pt"
    other.write_bytes((folder / "model.pt").read_bytes() + b"\0")
    (tmp_path / domain.DOMAIN_FILE).write_bytes((folder / domain.DOMAIN_FILE).read_bytes())
    with pytest.raises(domain.DomainMismatch, match="another model file"):
        domain.beside(other)
    assert domain.beside(tmp_path / "elsewhere" / "model.pt") is None


def test_predict_reports_each_crystal_s_domain_percentile_and_flag(run, tmp_path, capsys):
    from pymatgen.core import Lattice, Structure

    folder, graph_set = run
    domain.build(folder, graph_set, k=2)
    (tmp_path / "nacl.cif").write_text(
        Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(fmt="cif")
    )
    table = predict.predict([tmp_path / "nacl.cif"], folder / "model.pt")
    assert 0.0 <= table["domain_percentile"].iloc[0] <= 100.0 and table["out_of_domain"].iloc[0] in (True, False)
    assert predict.main([str(tmp_path / "nacl.cif"), "--model", str(folder / "model.pt")]) == 0
    assert "out_of_domain beyond their 95%" in capsys.readouterr().out
    (folder / domain.DOMAIN_FILE).unlink()
    assert predict.predict([tmp_path / "nacl.cif"], folder / "model.pt")["domain_percentile"].isna().all()
