"""What produced a result: parameters, seed, code version, package versions, data digests, time."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from mlib.paths import REPO_ROOT

PACKAGES = (
    "mlib",
    "torch",
    "dgl",
    "pymatgen",
    "numpy",
    "pandas",
    "scikit-learn",
    "scipy",
    "matplotlib",
    "seaborn",
    "papermill",
    "matgl",
    "optuna",
    "flwr",
)

# Data files read in this process: path -> sha256. Loaders call record_data_file().
_DATA_FILES: dict[str, str] = {}


def file_digest(path: str | Path, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file (``sha256``, ``md5``, ...), read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def record_data_file(path: str | Path, sha256: str, verified: bool = True) -> None:
    """Note that this process read a data file with the given digest (``verified``: against a published one)."""
    _DATA_FILES[str(path)] = sha256 if verified else f"{sha256} (unverified)"


def data_files() -> dict[str, str]:
    """The data files read so far in this process, with their digests."""
    return dict(_DATA_FILES)


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_state() -> dict[str, str | bool | None]:
    """Commit of the code and whether the code had uncommitted changes (``results/`` and the README, whose
    tables are filled in from ``results/``, are not code)."""

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results", ":(exclude)README.md")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def environment() -> dict[str, str]:
    return {"python": sys.version.split()[0], "platform": platform.platform(), "machine": platform.machine()}


def finished(folder: Path) -> bool:
    """Whether ``folder`` holds the results of a notebook that ran to its end (its ``provenance.json`` says so;
    older records without the flag count as finished)."""
    path = folder / "provenance.json"
    return path.exists() and json.loads(path.read_text()).get("finished", True) is not False
