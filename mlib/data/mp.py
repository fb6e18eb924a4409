"""Materials Project crystals: the ``mp-cgcnn`` mirror set and the ``mp.2018.6.1`` figshare file.

Both are returned as frames of material id, CIF text (parsed later, in parallel, by the featuriser)
and the targets formation_energy_per_atom and band_gap.
"""

from __future__ import annotations

import gzip
import json
import tarfile
from pathlib import Path
from typing import Any

import pandas as pd

from mlib import provenance
from mlib.catalogue import MP_TARGETS
from mlib.data.download import fetch, fetch_json
from mlib.data.errors import BadEntry
from mlib.data.mirror import mirror_file
from mlib.data.skips import Skips
from mlib.paths import cache_dir

FIGSHARE_ARTICLE = 7451351
FIGSHARE_FILE = 15087992
FIGSHARE_API = f"https://api.figshare.com/v2/articles/{FIGSHARE_ARTICLE}"


def load_mp_cgcnn(limit: int | None = None, ids: set[str] | None = None) -> pd.DataFrame:
    """The mirror's ``mp-cgcnn`` set: 36,737 MP crystals (CGCNN paper's snapshot).

    Returns a frame with ``material_id``, ``cif`` and the targets, in the mirror's index order;
    ``limit`` keeps the first ``limit`` crystals (a labelled subset), ``ids`` those of these MP ids.
    """
    props = pd.read_csv(
        mirror_file("mp-cgcnn/id_prop.csv"),
        header=None,
        names=["idx", *MP_TARGETS, "efermi", "cell_volume", "total_magnetization"],
    )
    names = pd.read_csv(mirror_file("mp-cgcnn/material_id_hash.csv"), header=None, names=["idx", "material_id"])
    frame = props.merge(names, on="idx", how="left", validate="one_to_one").sort_values("idx")
    if limit is not None:
        frame = frame.head(limit)
    if ids is not None:
        frame = frame[frame["material_id"].isin(ids)]
    wanted = {f"{i}.cif": i for i in frame["idx"]}
    cifs: dict[int, str] = {}
    with tarfile.open(mirror_file("mp-cgcnn/cifs.tar.gz")) as tar:
        for member in tar:
            idx = wanted.get(Path(member.name).name)
            if idx is not None and member.isfile():
                cifs[idx] = tar.extractfile(member).read().decode()
                if len(cifs) == len(wanted):
                    break
    frame["cif"] = frame["idx"].map(cifs)
    return frame[["idx", "material_id", "cif", *MP_TARGETS]].reset_index(drop=True)


def figshare_file_info(article: dict[str, Any], file_id: int = FIGSHARE_FILE) -> dict[str, Any]:
    """The entry of ``file_id`` in a figshare article record (name, size, download_url, computed_md5)."""
    for info in article.get("files", []):
        if int(info.get("id", -1)) == file_id:
            return info
    raise BadEntry(str(file_id), f"file not listed in figshare article {article.get('id')}", "download")


def download_mp_2018(folder: Path | None = None) -> Path:
    """Download ``mp.2018.6.1.json`` (figshare article 7451351, file 15087992), checked by its MD5.

    The article record gives the download URL and figshare's MD5; the download resumes after an
    interruption and a corrupt cached copy is fetched again.
    """
    folder = folder or cache_dir("figshare")
    article = fetch_json(FIGSHARE_API, folder / f"article_{FIGSHARE_ARTICLE}.json")
    info = figshare_file_info(article)
    path = fetch(
        info["download_url"],
        folder / info.get("name", "mp.2018.6.1.json"),
        checksum=("md5", info["computed_md5"]),
        desc="mp.2018.6.1",
    )
    provenance.record_data_file(path, provenance.file_digest(path))
    return path


def read_mp_2018(path: Path, skips: Skips | None = None) -> pd.DataFrame:
    """Entries of an ``mp.2018.6.1.json`` file (optionally gzipped) with both targets.

    Entries without a structure or a target are counted in ``skips`` with their material id.
    """
    skips = skips if skips is not None else Skips()
    opener = gzip.open if Path(path).read_bytes()[:2] == b"\x1f\x8b" else open
    with opener(path, "rt") as fh:
        data = json.load(fh)
    if isinstance(data, dict):  # column-oriented (pandas to_json default)
        data = pd.DataFrame(data).to_dict("records")
    rows = []
    for raw in data:
        mid = str(raw.get("material_id", "<no id>"))
        if not raw.get("structure"):
            skips.add(BadEntry(mid, "no structure", "parse"))
            continue
        rows.append({"material_id": mid, "cif": raw["structure"], **{t: _float_or_nan(raw.get(t)) for t in MP_TARGETS}})
    return pd.DataFrame(rows, columns=["material_id", "cif", *MP_TARGETS])


def load_mp_2018(limit: int | None = None) -> pd.DataFrame:
    """``mp.2018.6.1``: 69,239 MP crystals (needs internet on first use; then cached)."""
    frame = read_mp_2018(download_mp_2018())
    return frame.head(limit) if limit is not None else frame


def _float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
