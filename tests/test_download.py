"""Downloads: caching, resume after an interruption, checksums, and a clear message offline."""

import hashlib

import pytest

from mlib.data.download import fetch, fetch_json
from mlib.data.errors import ChecksumError, DataUnavailable

BODY = bytes(range(256)) * 400  # 100 kB


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_fetch_verifies_and_caches(server, tmp_path):
    server.routes["/f"] = BODY
    dest = fetch(server.url("/f"), tmp_path / "f.bin", checksum=("md5", md5(BODY)), backoff=0)
    assert dest.read_bytes() == BODY
    fetch(server.url("/f"), dest, checksum=("md5", md5(BODY)), backoff=0)
    assert len(server.requests) == 1  # second call served from the cache


def test_interrupted_download_resumes_with_range(server, tmp_path):
    server.routes["/f"] = BODY
    server.cut_once["/f"] = 30_000
    dest = fetch(server.url("/f"), tmp_path / "f.bin", checksum=("md5", md5(BODY)), backoff=0)
    assert dest.read_bytes() == BODY
    assert server.requests[0][1] is None
    assert server.requests[1][1] == "bytes=30000-"  # the second request continued where the first stopped
    assert not (tmp_path / "f.bin.part").exists()


def test_corrupt_cache_entry_is_fetched_again(server, tmp_path):
    server.routes["/f"] = BODY
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"garbage")
    fetch(server.url("/f"), dest, checksum=("md5", md5(BODY)), backoff=0)
    assert dest.read_bytes() == BODY


def test_checksum_mismatch_raises_and_keeps_nothing(server, tmp_path):
    server.routes["/f"] = BODY
    with pytest.raises(ChecksumError, match="md5"):
        fetch(server.url("/f"), tmp_path / "f.bin", checksum=("md5", "0" * 32), retries=1, backoff=0)
    assert not (tmp_path / "f.bin").exists()


def test_offline_error_says_how_to_use_a_mirror(tmp_path):
    with pytest.raises(DataUnavailable, match="MLIB_DATA_MIRROR"):
        fetch("http://127.0.0.1:9/nothing", tmp_path / "x", retries=1, backoff=0, timeout=2)


def test_http_404_is_not_retried(server, tmp_path):
    with pytest.raises(DataUnavailable, match="404"):
        fetch(server.url("/missing"), tmp_path / "x", retries=3, backoff=0)
    assert len(server.requests) == 1


def test_fetch_json_detects_corrupt_cached_document(server, tmp_path):
    server.routes["/doc"] = b'{"a": 1}'
    dest = tmp_path / "doc.json"
    assert fetch_json(server.url("/doc"), dest, backoff=0) == {"a": 1}
    dest.write_text('{"a": 1')  # truncated on disk
    assert fetch_json(server.url("/doc"), dest, backoff=0) == {"a": 1}
    assert len(server.requests) == 2


def test_reference_atom_features_are_downloaded_and_checked(server, tmp_path, monkeypatch):
    import functools
    import json

    from mlib.data import reference

    body = json.dumps({"1": [0.0, 1.0], "8": [1.0, 0.0]}).encode()
    server.routes["/atom_init.json"] = body
    monkeypatch.setattr(reference, "ATOM_INIT_SHA256", hashlib.sha256(body).hexdigest())
    monkeypatch.setattr(reference, "fetch", functools.partial(fetch, backoff=0))
    table = reference.reference_atom_init("live", url=server.url("/atom_init.json"))
    assert table == {"1": [0.0, 1.0], "8": [1.0, 0.0]}
    reference.reference_atom_init("live", url=server.url("/atom_init.json"))
    assert len(server.requests) == 1  # cached after the first download
    server.routes["/other.json"] = b'{"1": [9.0]}'
    (tmp_path / "unused").mkdir()
    monkeypatch.setenv("MLIB_CACHE", str(tmp_path / "fresh"))
    with pytest.raises(ChecksumError):
        reference.reference_atom_init("live", url=server.url("/other.json"))
