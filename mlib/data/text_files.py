"""Files a user brings (CIFs, CSVs of crystals): decoded and parsed one rule for all readers, a plain reason when
they cannot be (``mlib.predict`` turns it into a row, a Flower site into a one-line refusal)."""

from __future__ import annotations

import io

import pandas as pd


class UnreadableCSV(ValueError):
    """Text that is no CSV: ``empty`` (no header row) or not parsable (the message says where)."""

    def __init__(self, detail: str, empty: bool = False) -> None:
        super().__init__(detail)
        self.empty = empty


def decode(data: bytes, latin1: bool = True) -> str | None:
    """The text of a file: UTF-8, or (``latin1``) Latin-1 where that reads as text (older CIFs); None for data that
    is not text."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        if not latin1:
            return None
        text = data.decode("latin-1")
        printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
        return text if "\x00" not in text and printable >= 0.99 * len(text) else None


def parse_csv(text: str) -> pd.DataFrame:
    """A CSV's rows as text columns (nothing read as a number or NaN); :class:`UnreadableCSV` when it is none."""
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise UnreadableCSV("empty file", empty=True) from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise UnreadableCSV(str(exc).strip().splitlines()[-1]) from None
