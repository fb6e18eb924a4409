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


# Parameters that change how fast a notebook runs, not what it computes: they do not make its results differ.
HOW_NOT_WHAT = ("out_dir", "store_dir", "profile", "workers")


def fingerprint(parameters: dict, upstream: dict[str, str]) -> str:
    """What a notebook's results depend on: its parameters (less :data:`HOW_NOT_WHAT`) and the fingerprints of
    the results it read (``upstream``: notebook -> fingerprint). Equal fingerprints, the same inputs."""
    own = {k: v for k, v in parameters.items() if k not in HOW_NOT_WHAT}
    text = json.dumps({"parameters": own, "upstream": upstream}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def record_of(folder: Path) -> dict | None:
    """The ``provenance.json`` of a notebook's finished results, or None."""
    return json.loads((folder / "provenance.json").read_text()) if finished(folder) else None


def current_fingerprint(folder: Path) -> str | None:
    """The fingerprint of the finished results in ``folder`` (None: none there)."""
    record = record_of(folder)
    if record is None:
        return None
    return record.get("fingerprint") or fingerprint(record["parameters"], record.get("upstream", {}))


def stale(root: Path, needs: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Published notebooks under ``root`` made from results that have since been replaced, directly or further
    up (``needs`` in order, upstream first): notebook -> why. Results published before upstream fingerprints
    were recorded are not judged."""
    out = {}
    for notebook, ups in needs.items():
        record = record_of(root / notebook)
        if record is None or "upstream" not in record:
            continue
        changed = [up for up in ups if up in out or record["upstream"].get(up) != current_fingerprint(root / up)]
        if changed:
            out[notebook] = (
                f"made from results of {', '.join(changed)} that have since been replaced "
                f"(other parameters or data): rerun {notebook}"
            )
    return out
