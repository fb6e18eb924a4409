"""The experimental set: RxnNet's tables (live path against recorded copies, safe unpickling, the selection rule),
the join to structures with counted skips, and 07's splits."""

import functools
import gzip
import os
import pickle

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from mlib.data import expt_dhf
from mlib.data.errors import ChecksumError
from mlib.data.skips import Skips
from mlib.study.nb07_experiment import experiment_split, family
from tests.conftest import needs_mirror


def rxnnet_table(rows: dict[str, dict], value_column: str) -> pd.DataFrame:
    """A table in RxnNet's layout: indexed by MP id, the value column, formula, tags, organic flag, Wang's value."""
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "likely_mpid"
    for column, default in (("organic", False), ("chemistry_type", None), ("hf_wang", np.nan)):
        if column not in frame:
            frame[column] = [default] * len(frame)
    frame["chemistry_type"] = [t if isinstance(t, list) else ["oxide"] for t in frame["chemistry_type"]]
    return frame.rename(columns={"value": value_column})


def all_tables(**filled: pd.DataFrame) -> dict[str, pd.DataFrame]:
    empty = {t.name: rxnnet_table({}, t.column) for t in expt_dhf.TABLES}
    for t in expt_dhf.TABLES:
        empty[t.name] = empty[t.name].reindex(columns=[t.column, "formula", "organic", "chemistry_type", "hf_wang"])
    return {**empty, **filled}


def test_first_table_with_a_measured_value_wins_and_unmeasured_ids_are_counted():
    tables = all_tables(
        main=rxnnet_table(
            {"mp-1": {"value": -1.0, "formula": "MgO"}, "mp-2": {"value": np.nan, "formula": "CaO"}}, "hf_ref"
        ),
        **{
            "111124_nbs": rxnnet_table(
                {
                    "mp-1": {"value": {298.15: -9.0}, "formula": "MgO"},  # a later table never overrides
                    "mp-2": {"value": {298.15: -2.0}, "formula": "CaO"},  # NaN in main: this one
                    "mp-3": {"value": {298.15: np.nan}, "formula": "SrO"},  # no value anywhere
                },
                "dfH(298)_nbs",
            ),
            "wang_disag": rxnnet_table(
                {
                    "mp-1": {"value": -5.0, "formula": "MgO", "hf_wang": -1.1},
                    "mp-4": {"value": -3.0, "formula": "BaO", "hf_wang": -3.3},
                },
                "hf_ref",
            ),
        },
    )
    skips = Skips()
    table = expt_dhf.experimental_table(tables, skips).set_index("material_id")
    assert table.loc["mp-1", "dhf_expt_ev_per_atom"] == -1.0 and table.loc["mp-1", "table"] == "main"
    assert table.loc["mp-1", "hf_wang_ev_per_atom"] == -1.1  # Wang's value from whichever table has it
    assert table.loc["mp-2", "dhf_expt_ev_per_atom"] == -2.0 and table.loc["mp-2", "table"] == "111124_nbs"
    assert bool(table.loc["mp-4", "disputed"]) and not bool(table.loc["mp-2", "disputed"])
    assert "mp-3" not in table.index
    assert [(r.entry_id, r.kind) for r in skips.records] == [("mp-3", "no measured value")]


class Boom:
    def __reduce__(self):
        return (os.system, ("touch boom-was-run",))


def test_a_pickle_asking_for_anything_but_pandas_and_numpy_is_refused_before_it_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "main.pkl.gz"
    path.write_bytes(gzip.compress(pickle.dumps(pd.DataFrame({"a": [Boom()]}))))
    with pytest.raises(expt_dhf.UnsafePickle, match=r"RxnNet main: .*system.*refusing"):
        expt_dhf.read_table(path, "RxnNet main")
    assert not (tmp_path / "boom-was-run").exists()
    (tmp_path / "bad.pkl.gz").write_bytes(b"not a gzip")
    with pytest.raises(expt_dhf.BadTable, match="bad.pkl.gz"):
        expt_dhf.read_table(tmp_path / "bad.pkl.gz")


def test_formulas_of_hydrates_and_mixed_oxides_are_read():
    assert expt_dhf.composition("Na2TeO3·5H2O").almost_equals(expt_dhf.composition("Na2TeH10O8"))
    assert expt_dhf.composition("(3Na2O·Nb2O5)").almost_equals(expt_dhf.composition("Na6Nb2O8"))
    assert expt_dhf.composition("ThH3.75").fractional_composition.almost_equals(
        expt_dhf.composition("Th4H15").fractional_composition
    )


def test_the_join_keeps_matching_structures_and_counts_every_other_id():
    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(fmt="cif")
    table = pd.DataFrame(
        {
            "material_id": ["mp-22862", "mp-0", "mp-1", "mp-2"],
            "formula": ["NaCl", "KCl", "MgO", "Na?"],
            "dhf_expt_ev_per_atom": [-2.1, -2.2, -3.1, 0.0],
        }
    )
    crystals = pd.DataFrame(
        {
            "idx": [0, 1, 2],
            "material_id": ["mp-22862", "mp-1", "mp-2"],
            "cif": [nacl, nacl, nacl],
            "formation_energy_per_atom": [-2.0, -2.0, -2.0],
            "band_gap": [5.0, 5.0, 5.0],
        }
    )
    skips = Skips()
    joined = expt_dhf.join_structures(table, crystals, skips)
    assert joined["material_id"].tolist() == ["mp-22862"] and joined["reduced_formula"].tolist() == ["NaCl"]
    assert joined["residual"].iloc[0] == pytest.approx(-0.1)
    assert {(r.entry_id, r.kind) for r in skips.records} == {
        ("mp-0", "no mp-cgcnn structure"),
        ("mp-1", "composition disagrees"),
        ("mp-2", "bad formula"),
    }


@needs_mirror
def test_live_path_downloads_the_pinned_files_checks_them_and_gives_the_mirror_s_table(server, tmp_path, monkeypatch):
    """The recorded responses are the mirror's byte-for-byte copies of RxnNet's files at the pinned commit."""
    from mlib.data.download import fetch
    from mlib.data.mirror import mirror_file

    monkeypatch.setattr(expt_dhf, "fetch", functools.partial(fetch, backoff=0))

    for t in expt_dhf.TABLES:
        server.routes[f"/rxnnet/data/{t.path}"] = mirror_file(expt_dhf.MIRROR.format(name=t.name)).read_bytes()
    url = server.url("/rxnnet/data/{path}")
    server.cut_once["/rxnnet/data/" + expt_dhf.TABLES[0].path] = 1000  # an interrupted download resumes
    skips = Skips()
    live = expt_dhf.load("live", url=url, skips=skips)
    published = pd.read_csv(mirror_file("expt-dhf/rxnnet-dhf.csv"))
    assert len(live) == len(published) == 1991 and skips.summary()["count"].sum() == 64
    ordered = live.sort_values("material_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(
        ordered,
        published.sort_values("material_id").reset_index(drop=True),
        check_dtype=False,
        check_exact=False,
        atol=1e-6,
        rtol=0,
    )
    assert any(r == ("/rxnnet/data/" + expt_dhf.TABLES[0].path, "bytes=1000-") for r in server.requests)
    mirror = expt_dhf.load("mirror")
    pd.testing.assert_frame_equal(mirror, live)

    damaged = bytearray(server.routes["/rxnnet/data/" + expt_dhf.TABLES[1].path])
    damaged[100] ^= 0xFF
    server.routes["/rxnnet/data/" + expt_dhf.TABLES[1].path] = bytes(damaged)
    from mlib.paths import cache_dir

    (cache_dir("expt-dhf") / f"{expt_dhf.TABLES[1].name}.pkl.gz").unlink()
    with pytest.raises(ChecksumError):
        expt_dhf.load("live", url=url)


def test_each_split_fixes_its_test_crystals_for_every_n_and_seed():
    full = experiment_split(500, None, split=3, seed=0)
    assert len(full["test"]) == 100 and len(full["val"]) == 80 and len(full["train"]) == 320
    assert not set(full["test"]) & set(full["train"]) and not set(full["val"]) & set(full["train"])
    for n in (20, 50, 200):
        for seed in (0, 1):
            part = experiment_split(500, n, split=3, seed=seed)
            assert np.array_equal(part["test"], full["test"])
            assert len(part["train"]) == n and set(part["train"]) <= set(full["train"])
            assert len(part["val"]) == min(80, max(10, n // 3)) and set(part["val"]) <= set(full["val"])
    assert not np.array_equal(experiment_split(500, 20, 3, 0)["train"], experiment_split(500, 20, 3, 1)["train"])
    assert not np.array_equal(experiment_split(500, None, 0, 0)["test"], full["test"])


def test_chemistry_families():
    assert family("intermetallic") == "intermetallic"
    assert family("chloride;hydrate;oxide") == "halide"
    assert family("oxide;sulfate") == "oxide (incl. oxyanions)"
    assert family("selenide") == "chalcogenide" and family("boride") == "other"
