"""AFLOW: AFLUX paging against recorded responses, resumable cache, one record format for two sources."""

import json

import numpy as np
import pytest

from mlib.data import aflow
from mlib.data.download import fetch_json
from mlib.data.errors import BadEntry
from mlib.data.skips import Skips
from mlib.data.thermal import build_thermal
from tests.conftest import FIXTURES, needs_mirror

BASE = "/API/aflux/"


def serve_pages(server):
    for page in (1, 2):
        server.routes[aflow.aflux_url(page, 2, BASE)] = (FIXTURES / f"aflux_page{page}.json").read_bytes()


def test_paging_reads_every_entry(server, tmp_path):
    serve_pages(server)
    entries = aflow.fetch_agl_live(per_page=2, cache=tmp_path, base=server.url(BASE))
    assert [e["auid"] for e in entries] == [f"aflow:000000000000000{i}" for i in (1, 2, 3)]
    assert len(server.requests) == 2  # stopped at the short second page


def test_interrupted_paging_resumes_from_cache(server, tmp_path):
    serve_pages(server)
    calls = []

    def flaky(url, dest, **kw):
        calls.append(url)
        if len(calls) == 2:
            raise ConnectionError("network dropped")
        return fetch_json(url, dest, backoff=0, **kw)

    with pytest.raises(ConnectionError):
        aflow.fetch_agl_live(per_page=2, cache=tmp_path, base=server.url(BASE), fetcher=flaky)
    assert len(server.requests) == 1
    entries = aflow.fetch_agl_live(per_page=2, cache=tmp_path, base=server.url(BASE))
    assert len(entries) == 3
    assert len(server.requests) == 2  # page 1 came from the cache, only page 2 was fetched


def test_corrupt_cached_page_is_refetched(server, tmp_path):
    serve_pages(server)
    aflow.fetch_agl_live(per_page=2, cache=tmp_path, base=server.url(BASE))
    (tmp_path / "page_00001.json").write_text('{"1 of 3": {')
    assert len(aflow.fetch_agl_live(per_page=2, cache=tmp_path, base=server.url(BASE))) == 3
    assert len(server.requests) == 3


def test_total_from_aflow_keys():
    page = json.loads((FIXTURES / "aflux_page1.json").read_text())
    assert aflow.aflux_total(page) == 3
    assert len(aflow.aflux_entries(page)) == 2


def test_live_and_mirror_formats_give_the_same_structure():
    live = json.loads((FIXTURES / "aflux_page1.json").read_text())["1 of 3"]
    rec_live = aflow.parse_record(live)
    mirror_style = {k: v for k, v in live.items() if k not in ("geometry", "species", "composition")}
    mirror_style["lattice_matrix"] = rec_live.lattice.tolist()
    rec_mirror = aflow.parse_record(mirror_style)
    s1, s2 = rec_live.structure(), rec_mirror.structure()
    assert s1.composition.reduced_formula == s2.composition.reduced_formula == "NaCl"
    assert np.isclose(s1.volume, s2.volume)
    assert rec_live.target == pytest.approx(1.21e-4)
    assert rec_live.species == ["Cl", "Na"]


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"agl_thermal_expansion_300K": None}, "missing agl_thermal_expansion_300K"),
        ({"agl_thermal_expansion_300K": "nan"}, "non-finite"),
        ({"compound": "??"}, "unreadable compound"),
        ({"positions_fractional": [[0, 0, 0]]}, "1 positions for 2 atoms"),
        ({"species": "K,Cl"}, "disagree with compound"),
    ],
)
def test_bad_records_name_the_entry(change, reason):
    raw = {**json.loads((FIXTURES / "aflux_page1.json").read_text())["1 of 3"], **change}
    with pytest.raises(BadEntry, match=reason) as info:
        aflow.parse_record(raw)
    assert info.value.entry_id == "aflow:0000000000000001"
    skips = Skips()
    assert aflow.parse_records([raw], skips) == [] and len(skips) == 1


def test_entry_without_geometry_is_a_counted_skip():
    raw = json.loads((FIXTURES / "aflux_page1.json").read_text())["2 of 3"]
    rec = aflow.parse_record({k: v for k, v in raw.items() if k != "geometry"})
    skips = Skips()
    assert build_thermal("aflow", [rec], skips)[0].empty
    assert skips.table()["id"].tolist() == [rec.auid]
    with pytest.raises(BadEntry, match="no geometry"):
        rec.structure()


@needs_mirror
def test_mirror_records_parse_and_count_geometry():
    skips = Skips()
    records = aflow.load_agl("mirror", skips)
    with_geometry = sum(r.has_geometry for r in records)
    assert len(records) + len(skips) == len(aflow.read_mirror_records())
    assert 0 < with_geometry < len(records)
    assert len(aflow.read_mirror_index()) == 5534


def test_live_index_comes_from_the_same_paged_query(server, monkeypatch):
    """01_data's AGL index summary reads live AFLUX when there is no mirror (recorded responses)."""
    import json as json_module

    from mlib.study.nb01_data import agl_index_table

    entries = [
        {"auid": f"aflow:{k}", "compound": c, "nspecies": str(n), "spacegroup_relax": str(sg)}
        for k, (c, n, sg) in enumerate([("Na1Cl1", 2, 225), ("Na2Cl2", 2, 225), ("Si2", 1, 227)])
    ]
    monkeypatch.setattr(aflow, "fetch_agl_live", lambda: entries)
    table = agl_index_table("live")
    assert table.loc[0, "entries"] == 3 and table.loc[0, "after dedup"] == 2 and "live" in table.loc[0, "dataset"]
    assert json_module.dumps(int(table.loc[0, "unary"])) == "1"
