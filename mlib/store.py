"""The run store: every training run of every study, reused only when its key matches.

A run lives in a folder of the store (``<store>/<study>/<name...>/``, built by :mod:`mlib.store_paths`). Its key
says what made it:
the parameters, the digest of the crystals and targets it trained on, and the code versions of the
featuriser and the model. ``run.json`` (key and result record) is written last and atomically, so a
folder without it is an unfinished run. A finished run whose key matches is read back; one whose key
differs is never silently reused or mixed: :class:`RunMismatch` names the folder and what differs.

Every run, central or federated, follows one protocol: :meth:`Store.open` says whether a finished run with the
key exists (here or in a folder it may reuse) or an unfinished one can continue from its checkpoint, and clears
any other unfinished state; the run writes its files; :meth:`Store.finish` writes ``run.json`` last.

Every file of a run is written atomically (a temporary file in the same folder, then a rename), so an
interrupted write leaves the previous version or nothing, never half a file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECORD = "run.json"
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class RunMismatch(RuntimeError):
    """A run folder holds a run made with another key (parameters, data or code)."""


class MissingRun(FileNotFoundError):
    """A run another notebook needs has not been made yet."""


_JOURNAL: dict[Path, None] | None = None  # the files written in a journal block, in the order of their last write


@contextmanager
def journal() -> Iterator[dict[Path, None]]:
    """Record every file this process writes through :func:`atomic_write` inside the block, ordered by last write
    (a run's ``run.json`` comes after its other files): a remote worker sends them back to the driver."""
    global _JOURNAL
    previous, _JOURNAL = _JOURNAL, {}
    try:
        yield _JOURNAL
    finally:
        _JOURNAL = previous


def atomic_write(path: Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the result gets the permissions of any new file
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if _JOURNAL is not None:
        _JOURNAL.pop(path, None)
        _JOURNAL[path] = None
    return path


def write_text(path: Path, text: str) -> Path:
    """Atomic ``path.write_text(text)``."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, value: Any) -> Path:
    return write_text(path, json.dumps(value, indent=1, default=str))


def read_csv(path: Path):
    """A table the store wrote, its floats read back exactly (pandas 2's default parser can differ in the last digit)."""
    import pandas as pd

    return pd.read_csv(path, float_precision="round_trip")


def write_csv(path: Path, frame) -> Path:
    """Atomic ``frame.to_csv(path, index=False)``."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def save_torch(path: Path, obj: Any) -> Path:
    """Atomic ``torch.save``."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


class UntrustedFile(ValueError):
    """A torch file that holds more than tensors and plain containers: loading it could run code."""


def load_torch(path: Path) -> Any:
    """A file written by :func:`save_torch`, read with ``weights_only=True``: tensors, numbers, strings, lists,
    tuples and dicts only. A pickle that names any other Python object (a function to call, a class to build)
    is refused with :class:`UntrustedFile` before anything in it runs; other read errors propagate."""
    import pickle
    import re

    import torch

    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        wanted = re.search(r"GLOBAL (\S+)", str(exc))
        raise UntrustedFile(
            f"{path} was refused: besides tensors and plain containers it asks to load the Python object "
            f"{wanted.group(1) if wanted else '(unnamed)'}, which could run code; nothing in it was run. The "
            "study's model files and checkpoints hold tensors, numbers, strings, lists and dicts only: use a file "
            "written by mlib, from a source you trust"
        ) from None


def canonical(value: Any) -> Any:
    """``value`` as plain JSON types (tuples as lists, keys as strings), for comparing keys."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def differences(saved: dict, wanted: dict) -> list[str]:
    """Top-level (and one level down) fields in which two keys differ."""
    out = []
    for name in sorted(set(saved) | set(wanted)):
        a, b = saved.get(name), wanted.get(name)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [
                f"{name}.{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
            ]
        else:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out


def check_key(saved: dict, wanted: dict, where: Path) -> None:
    """Raise :class:`RunMismatch` naming ``where`` and the differing fields unless the keys are equal."""
    saved, wanted = canonical(saved), canonical(wanted)
    if saved != wanted:
        changed = "; ".join(differences(saved, wanted)[:6])
        raise RunMismatch(
            f"{Path(where).resolve()} holds a run made with another key ({changed}). Its results are kept: delete the folder "
            "to recompute it, or write to another results folder (--out) to keep both."
        )


CHECKPOINT = "last.pt"


@dataclass(frozen=True)
class Opened:
    """What the store holds for a run about to be made (:meth:`Store.open`)."""

    folder: Path  # where the run's files are (a reused folder's when ``record`` came from there)
    record: dict | None  # the finished run with this key: read it back, make nothing
    checkpoint: dict | None  # the unfinished run's ``last.pt`` with this key: continue from it

    @property
    def finished(self) -> bool:
        return self.record is not None


def _same(key: dict) -> dict:
    return key


class Store:
    """Run folders under one root (``results/<profile>/store`` for the runner)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def finished(self, folder: Path, key: dict) -> dict | None:
        """The record of the finished run in ``folder`` if its key equals ``key``; None if unfinished.

        A finished run with another key raises :class:`RunMismatch`.
        """
        path = Path(folder) / RECORD
        if not path.exists():
            return None
        saved = json.loads(path.read_text())
        check_key(saved["key"], key, Path(folder))
        return saved["record"]

    def finish(self, folder: Path, key: dict, record: dict) -> dict:
        """Mark the run in ``folder`` finished: its key and result record, written last and atomically."""
        write_json(Path(folder) / RECORD, {"key": canonical(key), "record": canonical(record)})
        return record

    def open(
        self,
        folder: Path,
        key: dict,
        load: Callable[[Path], dict],
        reuse: Sequence[Path] = (),
        comparable: Callable[[dict], dict] = _same,
        resume: bool = True,
    ) -> Opened:
        """The state of the run with ``key`` in ``folder``: finished (its record), continuable (its checkpoint,
        read by ``load``) or new (any unfinished files cleared).

        ``reuse``: other folders whose finished run is taken when its key is this one. ``comparable(key)``: the part
        of a key that must match for a checkpoint (or a finished run, whose ``last.pt`` is kept) to be continued,
        e.g. all but the number of epochs, so a run asked for more epochs goes on from where it stopped.
        ``resume=False`` starts an unfinished run over. A finished run or checkpoint with another key raises
        :class:`RunMismatch`.
        """
        folder = Path(folder)
        for other in reuse:
            try:
                if (record := self.finished(other, key)) is not None:
                    return Opened(Path(other), record, None)
            except RunMismatch:
                continue  # another run lives there; this one is made in folder
        checkpoint = folder / CHECKPOINT
        try:
            if (record := self.finished(folder, key)) is not None:
                return Opened(folder, record, None)
        except RunMismatch:
            saved = json.loads((folder / RECORD).read_text())["key"]
            if not (resume and checkpoint.exists() and canonical(comparable(saved)) == canonical(comparable(key))):
                raise
        if resume and checkpoint.exists():
            state = load(checkpoint)
            check_key(comparable(state.get("key") or {}), comparable(key), checkpoint)  # never another run's state
            return Opened(folder, None, state)
        self.clear(folder)
        return Opened(folder, None, None)

    def record(self, folder: Path, made_by: str) -> dict:
        """The record of a finished run another notebook needs (``made_by`` names the notebook to run)."""
        path = Path(folder) / RECORD
        if not path.exists():
            raise MissingRun(f"no finished run at {Path(folder).resolve()}; run {made_by} first (same profile)")
        return json.loads(path.read_text())["record"]

    def key(self, folder: Path, made_by: str) -> dict:
        """The key of a finished run another notebook needs (``made_by`` names the notebook to run)."""
        self.record(folder, made_by)
        return json.loads((Path(folder) / RECORD).read_text())["key"]

    def clear(self, folder: Path) -> None:
        """Remove an unfinished run's files (a finished run is never removed here)."""
        if (Path(folder) / RECORD).exists():
            raise RunMismatch(f"{Path(folder).resolve()} holds a finished run; it is not removed")
        shutil.rmtree(folder, ignore_errors=True)
