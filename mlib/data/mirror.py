"""The local data mirror (``$MLIB_DATA_MIRROR``): files verified against its ``SHA256SUMS``."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from mlib import provenance
from mlib.data.errors import ChecksumError, DataUnavailable
from mlib.paths import MIRROR_ENV, mirror_root

UNVERIFIED_ENV = "MLIB_MIRROR_UNVERIFIED"

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


def unverified_allowed() -> bool:
    """Whether the user opted out of digest checks (``$MLIB_MIRROR_UNVERIFIED=1``, for a mirror of their own)."""
    return os.environ.get(UNVERIFIED_ENV, "") == "1"


@cache
def _published_digests(root: Path) -> dict[str, str] | None:
    """The digests of ``SHA256SUMS`` by relative path, or None when the mirror has no such file."""
    sums = root / "SHA256SUMS"
    if not sums.exists():
        return None
    digests = {}
    for line in sums.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            digests[name.strip().removeprefix("./").removeprefix("*")] = digest
    return digests


@cache
def _verified(path: Path, size: int, mtime: float, expected: str | None) -> str:
    digest = provenance.file_digest(path)
    if expected is not None and digest != expected:
        raise ChecksumError(
            f"{path}: sha256 {digest} does not match SHA256SUMS ({expected}); the mirror copy is damaged: "
            "restore it from the original mirror"
        )
    return digest


def published_digest(root: Path, relative: str) -> str | None:
    """The digest ``SHA256SUMS`` lists for a mirror file (None: no list, or not listed)."""
    return (_published_digests(root) or {}).get(relative)


def expected_digest(root: Path, relative: str) -> str | None:
    """The published digest of a mirror file; a missing list or entry is refused unless the user opted out."""
    digests = _published_digests(root)
    expected = published_digest(root, relative)
    if expected is None and not unverified_allowed():
        where = (
            f"{root}/SHA256SUMS does not exist" if digests is None else f"{relative} is not listed in {root}/SHA256SUMS"
        )
        raise ChecksumError(
            f"cannot verify {relative}: {where}. Restore the mirror's SHA256SUMS, or for a mirror of "
            f"your own set {UNVERIFIED_ENV}=1 (the run's provenance then marks the file unverified)"
        )
    return expected


def mirror_file(relative: str) -> Path:
    """Path of a mirror file, checked against ``SHA256SUMS`` and recorded in the run's provenance."""
    return checked_mirror_file(relative)[0]


def checked_mirror_file(relative: str) -> tuple[Path, str]:
    """:func:`mirror_file` and the file's sha256 (hashed once per process while the file is unchanged)."""
    root = require_root()
    path = root / relative
    if not path.is_file():
        raise DataUnavailable(f"{relative} is not in the mirror at {root}. {HOW_TO}")
    expected = expected_digest(root, relative)
    stat = path.stat()
    digest = _verified(path, stat.st_size, stat.st_mtime, expected)
    provenance.record_data_file(f"${MIRROR_ENV}/{relative}", digest, verified=expected is not None)
    return path, digest


def available() -> bool:
    """Whether a mirror is configured and present."""
    root = mirror_root()
    return root is not None and root.is_dir()
