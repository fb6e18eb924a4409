"""A notebook run's outputs: tables and figures (atomic writes), shown inline, with ``provenance.json``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlib import provenance, store
from mlib.params import NotebookParams


def mean_std(values: Iterable[float], digits: int = 4) -> str:
    """``"mean ± std"`` over seeds (sample std; 0 for one value), as every table of the study shows it."""
    values = np.asarray(list(values), dtype=float)
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.{digits}g} ± {std:.2g}"


FALSE_DISCOVERY_RATE = 0.05  # where many paired tests are read together (Benjamini-Hochberg)


def benjamini_hochberg(pvalues: Iterable[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) of tests read together: a test counts at false discovery
    rate alpha when its q < alpha. NaN p-values (too few seeds) stay NaN and do not count as tests."""
    p = np.asarray(list(pvalues), dtype=float)
    q = np.full_like(p, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    if len(tested):
        order = tested[np.argsort(p[tested])]
        ranked = p[order] * len(tested) / np.arange(1, len(tested) + 1)
        q[order] = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    return q


MIN_PAIRS = 3  # paired runs a verdict needs: fewer give no test


def paired_p(after, before, least: int = MIN_PAIRS) -> float:
    """The paired t-test's p of ``after`` against ``before`` (runs paired by seed or split); NaN with fewer than
    ``least`` pairs."""
    from scipy import stats

    return float(stats.ttest_rel(after, before).pvalue) if len(after) >= least else float("nan")


def verdicts(gain: Iterable[float], q: Iterable[float], better: str, worse: str) -> list[str]:
    """``better`` / ``worse`` where a paired difference is beyond noise (q below :data:`FALSE_DISCOVERY_RATE`) in
    the sign of ``gain``, ``within seed noise`` where it is not, ``too few seeds to tell`` where it was not tested.
    Harm reads as harm."""
    out = []
    for g, qv in zip(gain, q):
        if np.isnan(qv):
            out.append("too few seeds to tell")
        elif qv < FALSE_DISCOVERY_RATE:
            out.append(better if g > 0 else worse)
        else:
            out.append("within seed noise")
    return out


def with_verdicts(table: pd.DataFrame, gain: str, better: str, worse: str, p: str = "paired t-test p") -> pd.DataFrame:
    """``table`` with its paired tests (column ``p``) read together: a Benjamini-Hochberg ``BH q`` and a ``verdict``
    (from the sign of column ``gain``, positive = better) inserted right after ``p``."""
    if table.empty:
        return table.assign(**{"BH q": [], "verdict": []})
    q = benjamini_hochberg(table[p])
    out = table.copy()
    out.insert(out.columns.get_loc(p) + 1, "BH q", q)
    out.insert(out.columns.get_loc("BH q") + 1, "verdict", verdicts(out[gain], q, better, worse))
    return out


def count_verdicts(table: pd.DataFrame, better: str, worse: str) -> str:
    """``"3 better ..., 2 worse ..., 7 within seed noise"``: a table's verdicts counted, in words."""
    counts = table["verdict"].value_counts()
    parts = [f"{counts.get(v, 0)} {v}" for v in (better, worse, "within seed noise", "too few seeds to tell")]
    return ", ".join(p for p in parts if not p.startswith("0 "))


def write_table(
    folder: Path, name: str, df: pd.DataFrame, caption: str, floatfmt: str = ".4g", markdown: bool = True
) -> pd.DataFrame:
    """``folder/name.csv`` and, unless ``markdown=False``, ``folder/name.md`` (the bold caption, then the table,
    as the README's result markers embed it); both written atomically."""
    if not caption.strip():
        raise ValueError(f"table {name!r} needs a caption naming its data set and crystal count")
    store.write_csv(Path(folder) / f"{name}.csv", df)
    if markdown:
        store.write_text(
            Path(folder) / f"{name}.md", f"**{caption}**\n\n{df.to_markdown(index=False, floatfmt=floatfmt)}\n"
        )
    return df


LISTED_ROWS = 10  # rows of a long listing shown inline (the CSV holds them all)


def _show_finding(finding: str) -> None:
    if finding:
        from IPython.display import Markdown, display

        display(Markdown(f"**What this shows:** {finding}"))


def in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (where figures are displayed inline)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class Run:
    """One notebook run: an output folder, its parameters, and what it wrote.

    Every table names its data set and crystal count in ``caption`` (the Markdown version carries it
    as a heading); every figure is saved as PNG and shown inline in a notebook; every save rewrites
    ``provenance.json`` so a run cut short still says what it produced and from which inputs. The
    notebook's training runs live in the run store, ``<store_dir>/<notebook>/``.
    """

    def __init__(self, params: NotebookParams, notebook: str) -> None:
        self.params = params
        self.notebook = notebook
        self.out_dir = Path(params.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.started = time.time()
        self.code = provenance.git_state()  # the code this notebook started with
        self.outputs: list[dict[str, str]] = []
        self.write_provenance()

    def path(self, name: str) -> Path:
        return self.out_dir / name

    def save_table(
        self,
        df: pd.DataFrame,
        name: str,
        caption: str,
        *,
        finding: str,
        floatfmt: str = ".4g",
        markdown: bool = True,
    ) -> pd.DataFrame:
        """Write ``name.csv`` and, unless ``markdown=False`` (long listings), ``name.md`` with the caption; in a
        notebook, show the caption, the table (every row and column, numbers to ``floatfmt``; a long listing's
        first rows) and ``finding``, what the table shows, written from its numbers by the caller."""
        write_table(self.path(f"{name}.csv").parent, name, df, caption, floatfmt, markdown)
        self._note(f"{name}.csv", caption, finding)
        if in_notebook():
            from IPython.display import HTML, Markdown, display

            shown = df if markdown else df.head(LISTED_ROWS)
            display(Markdown(f"**{caption}**"))
            display(HTML(shown.to_html(index=False, float_format=lambda v: f"{v:{floatfmt}}", na_rep="")))
            if len(shown) < len(df):
                display(Markdown(f"*The first {len(shown)} of {len(df):,} rows; all of them: `{name}.csv`.*"))
            _show_finding(finding)
        return df

    def save_figure(self, fig: Any, name: str, caption: str, *, finding: str, dpi: int = 150) -> Path:
        """Write ``name.png`` from a matplotlib figure, show it inline in a notebook with its caption and
        ``finding`` (what it shows, written from the numbers behind it), then close it."""
        import matplotlib.pyplot as plt

        path = store.atomic_write(
            self.path(f"{name}.png"), lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
        )
        if in_notebook():
            from IPython.display import Markdown, display

            display(fig)
            display(Markdown(f"*{caption}*"))
            _show_finding(finding)
        plt.close(fig)
        self._note(path.name, caption, finding)
        return path

    def _note(self, file: str, caption: str, finding: str = "") -> None:
        entry = {"file": file, "caption": caption, **({"finding": finding} if finding else {})}
        self.outputs = [o for o in self.outputs if o["file"] != file] + [entry]
        self.write_provenance()

    def write_provenance(self) -> Path:
        record = {
            "notebook": self.notebook,
            "profile": self.params.profile,
            "seed": getattr(self.params, "seed", None),  # notebooks with lists of seeds: see parameters
            "parameters": self.params.as_dict(),
            "code": self.code,
            "packages": provenance.package_versions(),
            "environment": provenance.environment(),
            "data_files": provenance.data_files(),
            "started": datetime.fromtimestamp(self.started, UTC).isoformat(timespec="seconds"),
            "wall_time_s": round(time.time() - self.started, 2),
            "finished": False,  # the runner sets it once the whole notebook ran
            "outputs": self.outputs,
        }
        return store.write_text(self.path("provenance.json"), json.dumps(record, indent=2, default=str))


@dataclass(frozen=True)
class Results:
    """Another notebook's finished results in the same profile: its parameters and tables."""

    folder: Path
    parameters: dict

    def has(self, name: str) -> bool:
        return (self.folder / name).is_file()

    def table(self, name: str) -> pd.DataFrame:
        return store.read_csv(self.folder / name)


def results_of(params: NotebookParams, notebook: str) -> Results:
    """The finished results of ``notebook`` in this profile, beside its run store (the runner checks they are not
    stale)."""
    folder = Path(params.store_dir).parent / notebook
    record = provenance.record_of(folder)
    if record is None:
        raise FileNotFoundError(f"{folder} holds no finished results of {notebook}: run {notebook} first")
    return Results(folder, record["parameters"])
