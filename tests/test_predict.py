"""Predicting one's own crystals: CIF files, folders, CSVs; bad rows get their reason, the others a value."""

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from mlib import predict
from mlib.catalogue import THERMAL_TARGET
from mlib.graphs.featurize import GraphSet
from mlib.graphs.neighbors import GraphSpec
from mlib.models.registry import build_model
from mlib.params import TrainConfig
from mlib.training import fit_regressor
from tests.conftest import toy_data


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    graphs, y = toy_data()
    table = pd.DataFrame(
        {"id": [f"c{i}" for i in range(len(y))], THERMAL_TARGET: y.numpy() * 1e-5, "reduced_formula": "NaCl"}
    )
    folder = tmp_path_factory.mktemp("model") / "run"
    fit_regressor(
        lambda: build_model("cgcnn", hidden=8, n_conv=2),
        GraphSet("toy", graphs, table, GraphSpec(), source_digest="toy"),
        THERMAL_TARGET,
        TrainConfig(epochs=2, batch_size=4),
        folder,
        show=False,
    )
    return folder / "model.pt"


def cif(structure: Structure) -> str:
    return structure.to(fmt="cif")


NACL = Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_files_folders_and_csv_rows_are_predicted_or_given_a_reason(tmp_path, model_path):
    (tmp_path / "cifs").mkdir()
    (tmp_path / "cifs" / "nacl.cif").write_text(cif(NACL))
    (tmp_path / "cifs" / "kcl.cif").write_text(cif(Structure(Lattice.cubic(6.2), ["K", "Cl"], [[0, 0, 0], [0.5] * 3])))
    disordered = Structure(Lattice.cubic(5.6), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5] * 3])
    rows = [
        {"id": "broken", "cif": "data_x\n_cell_length_a 3\n"},
        {"id": "md", "cif": cif(Structure(Lattice.cubic(3.5), ["Md", "Cl"], [[0, 0, 0], [0.5] * 3]))},
        {"id": "lonely", "cif": cif(Structure(Lattice.cubic(30.0), ["Na"], [[0, 0, 0]]))},
        {"id": "mixed", "cif": cif(disordered)},
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "mine.csv", index=False)
    table = predict.predict([tmp_path / "cifs", tmp_path / "mine.csv"], model_path).set_index("id")
    ok = table[table["status"] == "ok"]
    assert len(ok) == 2 and ok["prediction"].notna().all() and set(ok["formula"]) == {"NaCl", "KCl"}
    assert (table["unit"] == "1/K").all() and (table["dataset"] == "toy").all()
    reasons = table["reason"]
    assert "unparsable CIF" in reasons["broken"] and "Z=101 has no atom-feature data" in reasons["md"]
    assert "no neighbour" in reasons["lonely"] and "partial occupancy" in reasons["mixed"]


def test_the_command_line_exits_non_zero_only_when_nothing_was_predicted(tmp_path, model_path, capsys):
    (tmp_path / "nacl.cif").write_text(cif(NACL))
    (tmp_path / "bad.cif").write_text("not a cif")
    assert (
        predict.main(
            [
                str(tmp_path / "nacl.cif"),
                str(tmp_path / "bad.cif"),
                "--model",
                str(model_path),
                "--out",
                str(tmp_path / "out.csv"),
            ]
        )
        == 0
    )
    assert "1 of 2 crystals could not be predicted" in capsys.readouterr().err
    assert len(pd.read_csv(tmp_path / "out.csv")) == 2
    assert predict.main([str(tmp_path / "bad.cif"), "--model", str(model_path)]) == 1
    with pytest.raises(SystemExit) as info:
        predict.main([str(tmp_path / "nacl.cif"), "--model", str(tmp_path / "none.pt")])
    assert info.value.code == 2 and "no model at" in capsys.readouterr().err


def test_an_ensemble_manifest_gives_the_members_mean_and_a_scaled_spread(tmp_path, model_path):
    import json

    import torch

    from mlib import model_file

    member = model_file.load(model_path)
    other = model_file.read(model_path)
    other["state"] = {
        k: v + 0.05 if v.is_floating_point() and "table" not in k else v for k, v in other["state"].items()
    }
    torch.save(other, tmp_path / "other.pt")
    (tmp_path / "ensemble.json").write_text(json.dumps({"members": [str(model_path), "other.pt"], "spread_scale": 2.0}))
    (tmp_path / "nacl.cif").write_text(cif(NACL))
    table = predict.predict([tmp_path / "nacl.cif"], tmp_path / "ensemble.json").iloc[0]
    graph, _, _ = predict._graph(cif(NACL), member.spec)
    with torch.no_grad():
        values = torch.cat(
            [m.scaler.decode(m.model(graph)) for m in predict.load_models(tmp_path / "ensemble.json")[0]]
        )
    assert table["prediction"] == pytest.approx(float(values.mean()), rel=1e-6)
    assert table["spread"] == pytest.approx(2.0 * float(values.std()), rel=1e-6) and table["spread"] > 0
    assert table["model"] == "ensemble of 2 cgcnn"
    (tmp_path / "broken.json").write_text('{"members": ["other.pt"]}')
    with pytest.raises(ValueError, match="not an ensemble manifest"):
        predict.predict([tmp_path / "nacl.cif"], tmp_path / "broken.json")
