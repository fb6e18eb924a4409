"""CrabNet's split (download, checks, mapping onto AFLOW records) and the Magpie + random forest baseline."""

import functools
import hashlib

import numpy as np
import pandas as pd
import pytest

from mlib import composition
from mlib.data import crabnet
from mlib.data.download import fetch
from mlib.data.errors import ChecksumError
from tests.conftest import needs_mirror

SPLIT = {
    "train": b"formula,target\nNa1Cl1,1.2e-05\nK1Cl1,2.0e-05\n",
    "val": b"formula,target\nLi1F1,3.0e-05\n",
    "test": b"formula,target\nCs1I1,4.0e-05\nMg1O1,5.0e-05\nZn1S1,6.0e-05\n",
}


def test_the_split_is_downloaded_checked_and_cached(server, monkeypatch):
    for part, body in SPLIT.items():
        server.routes[f"/{part}.csv"] = body
    monkeypatch.setattr(crabnet, "SHA256", {p: hashlib.sha256(b).hexdigest() for p, b in SPLIT.items()})
    monkeypatch.setattr(crabnet, "fetch", functools.partial(fetch, backoff=0))
    split = crabnet.load_split("live", url=server.url("/{part}.csv"))
    assert list(split["part"]) == ["train", "train", "val", "test", "test", "test"]
    assert list(split["reduced_formula"][:2]) == ["NaCl", "KCl"]
    crabnet.load_split("live", url=server.url("/{part}.csv"))
    assert len(server.requests) == 3  # cached after the first download
    monkeypatch.setattr(crabnet, "SHA256", {**crabnet.SHA256, "train": "0" * 64})
    with pytest.raises(ChecksumError):
        crabnet.load_split("live", url=server.url("/{part}.csv"))


def test_formulas_match_the_closest_aflow_label_within_the_tolerance_and_the_rest_are_counted():
    split = pd.DataFrame(
        {
            "formula": ["Na1Cl1", "K1Cl1", "Li1F1", "Cs1I1", "Mg1O1", "Zn1S1"],
            "target": [1.2e-5, 2.0e-5, 3.0e-5, 4.0e-5, 5.0e-5, 6.0e-5],
            "part": ["train", "train", "val", "test", "test", "test"],
            "reduced_formula": ["NaCl", "KCl", "LiF", "CsI", "MgO", "ZnS"],
        }
    )
    structure = {"lattice": np.eye(3) * 4, "species": ["Na"], "frac_coords": [[0, 0, 0]]}
    records = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e", "f"],
            "reduced_formula": ["NaCl", "NaCl", "KCl", "LiF", "CsI", "MgO"],
            "spacegroup": [225, 221, 225, 225, 221, 225],
            "thermal_expansion": [1.3e-5, 1.2001e-5, 2.0e-5, 3.5e-5, 4.0e-5, 5.0e-5],
            "source": [structure, structure, structure, structure, structure, None],
            "nspecies": [2] * 6,
        }
    )
    matched, counts = crabnet.match_records(split, records, tolerance=0.01)
    assert list(matched["formula"]) == ["Na1Cl1", "K1Cl1", "Cs1I1"]
    assert list(matched["id"]) == ["b", "c", "e"]  # NaCl: the entry with the closer label
    assert list(matched["target"]) == [1.2e-5, 2.0e-5, 4.0e-5] and matched["aflow_label"].iloc[0] == 1.2001e-5
    outcome = counts.set_index("outcome")["all"].to_dict()
    assert outcome == {
        "matched": 3,
        "matched entry has no geometry": 1,
        "no AFLOW entry of the formula": 1,
        "no label within 1%": 1,
    }
    assert counts["all"].sum() == len(split)


def test_magpie_features_and_a_seeded_forest():
    x = composition.magpie_features(["NaCl", "KCl", "NaCl", "MgO"])
    assert x.shape == (4, 132) and np.isfinite(x).all() and np.array_equal(x[0], x[2])
    y = np.array([1.0, 2.0, 1.0, 3.0])
    first = composition.random_forest(x, y, seed=0, trees=10).predict(x)
    again = composition.random_forest(x, y, seed=0, workers=2, trees=10).predict(x)
    assert np.array_equal(first, again)


@needs_mirror
def test_published_predictions_come_from_the_mirror_or_crabnet_s_files_checked_by_their_reported_mae(
    server, monkeypatch
):
    """The recorded responses are the mirror's copies written back in each published file's own columns."""
    from mlib.data.mirror import mirror_file
    from mlib.paths import cache_dir

    monkeypatch.setattr(crabnet, "fetch", functools.partial(fetch, backoff=0))
    for entry in crabnet.PUBLISHED:
        frame = pd.read_csv(mirror_file(f"aflow-agl/crabnet-tec/predictions/{entry.mirror}"))
        upstream = frame.rename(columns={ours: theirs for theirs, ours in entry.columns.items()})
        server.routes[f"/p/{entry.path}"] = upstream.to_csv(index=False, float_format="%.17g").encode()
    url = server.url("/p/{path}")
    live, mirror = crabnet.load_published("live", url=url), crabnet.load_published("mirror")
    pd.testing.assert_frame_equal(live, mirror)
    assert live.groupby("model").size().to_dict() == {
        "CrabNet": 724, "ElemNet": 723, "HotCrab": 724, "Roost": 724, "random forest": 724
    }  # fmt: skip
    roost = crabnet.PUBLISHED[0]
    shifted = pd.read_csv(mirror_file(f"aflow-agl/crabnet-tec/predictions/{roost.mirror}"))
    shifted["predicted"] += 1e-6  # not the predictions the paper reports
    server.routes[f"/p/{roost.path}"] = (
        shifted.rename(columns={o: t for t, o in roost.columns.items()}).to_csv(index=False).encode()
    )
    (cache_dir("crabnet") / "predictions" / roost.mirror).unlink()
    with pytest.raises(crabnet.BadPublished, match="not the 3.69e-06 the CrabNet paper reports"):
        crabnet.load_published("live", url=url)
