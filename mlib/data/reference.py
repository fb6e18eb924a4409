"""The CGCNN reference implementation's atom features (txie-93/cgcnn, ``data/sample-regression``, MIT)."""

from __future__ import annotations

import json

from mlib import provenance
from mlib.data import aflow
from mlib.data.download import fetch
from mlib.data.mirror import mirror_file
from mlib.paths import cache_dir

ATOM_INIT_URL = "https://raw.githubusercontent.com/txie-93/cgcnn/master/data/sample-regression/atom_init.json"
ATOM_INIT_SHA256 = "cb90bd2257dbf8cfc4e6b2b6d4348d4616e8e9680f1339b1461137032e0f1894"


def reference_atom_init(source: str = "auto", url: str = ATOM_INIT_URL) -> dict[str, list[float]]:
    """The reference implementation's ``atom_init.json`` (element Z as a string -> 92 one-hot features):
    the mirror's copy (``cgcnn-sample/``), or downloaded from its public repository (cached, retried,
    checked against its SHA-256)."""
    if aflow.resolve_source(source) == "mirror":
        path = mirror_file("cgcnn-sample/atom_init.json")
    else:
        path = fetch(url, cache_dir("reference") / "atom_init.json", checksum=("sha256", ATOM_INIT_SHA256))
        provenance.record_data_file(url, ATOM_INIT_SHA256)
    return json.loads(path.read_text())
