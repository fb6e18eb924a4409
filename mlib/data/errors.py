"""Errors of the data layer, each naming what went wrong and where."""

from __future__ import annotations


class DataUnavailable(RuntimeError):
    """Neither the mirror nor the network can provide a data file."""


class ChecksumError(RuntimeError):
    """A file's digest does not match the one published for it."""


class BadEntry(ValueError):
    """One entry of a data set cannot be used; carries its id and the reason."""

    def __init__(self, entry_id: str, reason: str, stage: str = "parse", kind: str | None = None) -> None:
        super().__init__(f"entry {entry_id}: {reason} (stage: {stage})")
        self.entry_id = entry_id
        self.reason = reason
        self.stage = stage
        self.kind = kind or reason  # the category skips are counted by

    def __reduce__(self):  # pickles with all its fields (skips travel to worker processes)
        return type(self), (self.entry_id, self.reason, self.stage, self.kind)
