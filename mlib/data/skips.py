"""Counting and reporting entries that a step could not use: nothing disappears silently."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from mlib.data.errors import BadEntry


@dataclass
class Skips:
    """Entries skipped by a pipeline, with id, stage and reason.

    ``strict=True`` turns the first skip into an exception instead (for users who want a data set
    to be complete or nothing).
    """

    strict: bool = False
    records: list[BadEntry] = field(default_factory=list)

    def add(self, entry: BadEntry) -> None:
        if self.strict:
            raise entry
        self.records.append(entry)

    def extend(self, other: Skips) -> None:
        for entry in other.records:
            self.add(entry)

    def __len__(self) -> int:
        return len(self.records)

    def table(self) -> pd.DataFrame:
        """One row per skipped entry."""
        return pd.DataFrame(
            [{"id": e.entry_id, "stage": e.stage, "kind": e.kind, "reason": e.reason} for e in self.records],
            columns=["id", "stage", "kind", "reason"],
        )

    def summary(self) -> pd.DataFrame:
        """Counts by stage and kind of reason, with one example id."""
        table = self.table()
        if table.empty:
            return pd.DataFrame(columns=["stage", "kind", "count", "example"])
        grouped = table.groupby(["stage", "kind"], sort=False)
        out = grouped.size().reset_index(name="count")
        out["example"] = grouped["reason"].first().to_numpy()
        return out.sort_values("count", ascending=False).reset_index(drop=True)
