"""Materials Project: the figshare mp.2018.6.1 loader against recorded responses, and the mirror set."""

import functools
import gzip
import hashlib
import json

import pytest
from pymatgen.core import Lattice, Structure

from mlib.data import mp
from mlib.data.errors import BadEntry, ChecksumError
from mlib.data.skips import Skips
from tests.conftest import needs_mirror


def tiny_mp_file() -> bytes:
    """Three entries in the mp.2018.6.1 format (CIF strings), one without a structure."""
    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    si = Structure(Lattice.cubic(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    rows = [
        {
            "material_id": "mp-22862",
            "structure": nacl.to(fmt="cif"),
            "formation_energy_per_atom": -2.1,
            "band_gap": 5.0,
        },
        {"material_id": "mp-149", "structure": si.to(fmt="cif"), "formation_energy_per_atom": 0.0, "band_gap": 0.61},
        {"material_id": "mp-0", "structure": None, "formation_energy_per_atom": 1.0, "band_gap": 0.0},
    ]
    return gzip.compress(json.dumps(rows).encode())


def article(server, body: bytes, md5: str | None = None) -> bytes:
    """A figshare article record, in the API's format, listing the file."""
    return json.dumps(
        {
            "id": mp.FIGSHARE_ARTICLE,
            "files": [
                {
                    "id": mp.FIGSHARE_FILE,
                    "name": "mp.2018.6.1.json.gz",
                    "size": len(body),
                    "download_url": server.url("/files/15087992"),
                    "computed_md5": md5 or hashlib.md5(body).hexdigest(),
                }
            ],
        }
    ).encode()


def test_download_checks_md5_and_reads_entries(server, tmp_path, monkeypatch):
    body = tiny_mp_file()
    server.routes["/files/15087992"] = body
    server.routes["/v2/articles/7451351"] = article(server, body)
    monkeypatch.setattr(mp, "FIGSHARE_API", server.url("/v2/articles/7451351"))
    path = mp.download_mp_2018(tmp_path)
    skips = Skips()
    frame = mp.read_mp_2018(path, skips)
    assert frame["material_id"].tolist() == ["mp-22862", "mp-149"]
    assert frame["band_gap"].tolist() == [5.0, 0.61]
    assert skips.table()["id"].tolist() == ["mp-0"]
    mp.download_mp_2018(tmp_path)
    assert len(server.requests) == 2  # article record and file both came from the cache


def test_download_with_wrong_md5_fails(server, tmp_path, monkeypatch):
    body = tiny_mp_file()
    server.routes["/files/15087992"] = body
    server.routes["/v2/articles/7451351"] = article(server, body, md5="0" * 32)
    monkeypatch.setattr(mp, "FIGSHARE_API", server.url("/v2/articles/7451351"))
    monkeypatch.setattr(mp, "fetch", functools.partial(mp.fetch, backoff=0))  # retries without the waits
    with pytest.raises(ChecksumError):
        mp.download_mp_2018(tmp_path)


def test_missing_file_in_article_is_named():
    with pytest.raises(BadEntry, match="15087992"):
        mp.figshare_file_info({"id": 1, "files": []})


@needs_mirror
def test_mirror_subset_has_ids_cifs_and_targets():
    frame = mp.load_mp_cgcnn(limit=5)
    assert len(frame) == 5
    assert frame["material_id"].str.startswith("mp-").all()
    assert frame["cif"].str.contains("_cell_length_a").all()
    assert frame[list(mp.MP_TARGETS)].notna().all().all()
