"""Saving a run's figures and tables, each save refreshing the run's ``provenance.json``."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from mlib import provenance
from mlib.params import NotebookParams


class Run:
    """One notebook run: an output folder, its parameters, and what it wrote.

    Every table names its data set and crystal count in ``caption`` (the Markdown version carries
    it as a heading); every save rewrites ``provenance.json`` so a run cut short still says what
    it produced and from which inputs.
    """

    def __init__(self, params: NotebookParams, notebook: str) -> None:
        self.params = params
        self.notebook = notebook
        self.out_dir = Path(params.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.started = time.time()
        self.outputs: list[dict[str, str]] = []
        self.write_provenance()

    def path(self, name: str) -> Path:
        return self.out_dir / name

    def save_table(self, df: pd.DataFrame, name: str, caption: str, floatfmt: str = ".4g",
                   markdown: bool = True) -> pd.DataFrame:
        """Write ``name.csv`` and, unless ``markdown=False`` (long listings), ``name.md`` with the caption."""
        if not caption.strip():
            raise ValueError(f"table {name!r} needs a caption naming its data set and crystal count")
        df.to_csv(self.path(f"{name}.csv"), index=False)
        if markdown:
            text = df.to_markdown(index=False, floatfmt=floatfmt)
            self.path(f"{name}.md").write_text(f"**{caption}**\n\n{text}\n")
        self._note(f"{name}.csv", caption)
        return df

    def save_figure(self, fig: Any, name: str, caption: str, dpi: int = 150) -> Path:
        """Write ``name.png`` from a matplotlib figure."""
        path = self.path(f"{name}.png")
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        self._note(path.name, caption)
        return path

    def _note(self, file: str, caption: str) -> None:
        self.outputs = [o for o in self.outputs if o["file"] != file] + [{"file": file, "caption": caption}]
        self.write_provenance()

    def write_provenance(self) -> Path:
        record = {
            "notebook": self.notebook,
            "profile": self.params.profile,
            "seed": self.params.seed,
            "parameters": self.params.as_dict(),
            "git": provenance.git_state(),
            "packages": provenance.package_versions(),
            "environment": provenance.environment(),
            "data_files": provenance.data_files(),
            "started": datetime.fromtimestamp(self.started, timezone.utc).isoformat(timespec="seconds"),
            "wall_time_s": round(time.time() - self.started, 2),
            "outputs": self.outputs,
        }
        path = self.path("provenance.json")
        path.write_text(json.dumps(record, indent=2, default=str))
        return path
