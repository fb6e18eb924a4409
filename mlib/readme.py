"""Keep the README's result tables in step with the committed results.

The README marks each table with ``<!-- result: cpu/01_data/agl_index_counts -->`` ...
``<!-- /result -->``; :func:`update` replaces what is between the markers with the Markdown table the
run wrote, so no number in the README is typed by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

from mlib.paths import REPO_ROOT, RESULTS_DIR

_BLOCK = re.compile(r"(<!-- result: (?P<name>[\w./+-]+) -->\n)(?P<body>.*?)(<!-- /result -->)", re.S)


def update(readme: Path = REPO_ROOT / "README.md", results: Path = RESULTS_DIR) -> list[str]:
    """Refresh every marked table whose Markdown file exists; returns the names refreshed."""
    text = readme.read_text()
    refreshed = []

    def replace(match: re.Match) -> str:
        table = results / f"{match['name']}.md"
        if not table.exists():
            return match.group(0)
        refreshed.append(match["name"])
        return f"{match.group(1)}{table.read_text().strip()}\n{match.group(4)}"

    readme.write_text(_BLOCK.sub(replace, text))
    return refreshed
