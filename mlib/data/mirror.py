"""The local data mirror (``$MLIB_DATA_MIRROR``): files verified against its ``SHA256SUMS``."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from mlib import provenance
from mlib.data.errors import ChecksumError, DataUnavailable
from mlib.paths import MIRROR_ENV, mirror_root

HOW_TO = (
    f"Set {MIRROR_ENV} to a folder laid out like the study's data mirror "
    f"(mp-cgcnn/, aflow-agl/, cgcnn-sample/ and SHA256SUMS), e.g. `export {MIRROR_ENV}=../shared/data`."
)


def require_root() -> Path:
    root = mirror_root()
    if root is None:
        raise DataUnavailable(f"no data mirror configured. {HOW_TO}")
    if not root.is_dir():
        raise DataUnavailable(f"{MIRROR_ENV}={root} is not a folder. {HOW_TO}")
    return root


@cache
def _published_digests(root: Path) -> dict[str, str]:
    sums = root / "SHA256SUMS"
    if not sums.exists():
        return {}
    digests = {}
    for line in sums.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            digests[name.strip().removeprefix("./")] = digest
    return digests


@cache
def _verified(path: Path, size: int, mtime: float, expected: str | None) -> str:
    digest = provenance.file_digest(path)
    if expected is not None and digest != expected:
        raise ChecksumError(
            f"{path}: sha256 {digest} does not match SHA256SUMS ({expected}); the mirror copy is damaged"
        )
    return digest


def mirror_file(relative: str) -> Path:
    """Path of a mirror file, checked against ``SHA256SUMS`` and recorded in the run's provenance."""
    root = require_root()
    path = root / relative
    if not path.is_file():
        raise DataUnavailable(f"{relative} is not in the mirror at {root}. {HOW_TO}")
    stat = path.stat()
    digest = _verified(path, stat.st_size, stat.st_mtime, _published_digests(root).get(relative))
    provenance.record_data_file(f"${MIRROR_ENV}/{relative}", digest)
    return path


def available() -> bool:
    """Whether a mirror is configured and present."""
    root = mirror_root()
    return root is not None and root.is_dir()
