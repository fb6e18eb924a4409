"""A static HTML site of a profile's results, built from ``results/<profile>/`` without rerunning anything.

    python -m mlib.report --profile cpu            # -> site/cpu/index.html  (make report PROFILE=cpu)

Every executed notebook becomes a page (nbconvert's HTML exporter, figures embedded); the index lists each
notebook with its provenance (when, which commit, seed, parameters, package versions, data digests) and
every figure (shown) and table (the first rows, and the CSV) with its caption. A notebook that has not run
in the profile is listed as such.
"""

from __future__ import annotations

import argparse
import html
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mlib import catalogue
from mlib.paths import REPO_ROOT, RESULTS_DIR

SITE_DIR = REPO_ROOT / "site"
TABLE_ROWS = 15  # rows of each table shown on the index (the CSV holds all)

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #ccc; padding-top: 1rem; }
figure { margin: 1rem 0; } figure img { max-width: min(100%, 48rem); border: 1px solid #eee; }
figcaption, .caption { font-style: italic; color: #444; margin: 0.3rem 0; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; display: block; overflow-x: auto; }
td, th { border: 1px solid #ddd; padding: 0.2rem 0.5rem; text-align: right; }
details { margin: 0.5rem 0; } code { background: #f4f4f4; padding: 0 0.2rem; }
"""


def build(profile: str, results: Path = RESULTS_DIR, site: Path = SITE_DIR) -> Path:
    """Write the site of ``results/<profile>/`` to ``site/<profile>/``; returns the index page."""
    source = Path(results) / profile
    if not source.is_dir():
        raise FileNotFoundError(f"{source} does not exist: run `make reproduce PROFILE={profile}` first")
    out = Path(site) / profile
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    sections = [_section(stem, source / stem, out) for stem in catalogue.NOTEBOOKS]
    index = out / "index.html"
    index.write_text(
        _page(
            f"mlib results, {profile} profile",
            f"<h1>mlib results: the <code>{html.escape(profile)}</code> profile</h1>"
            f"<p>Built from <code>results/{html.escape(profile)}/</code>; every page is an executed notebook, "
            "every figure and table below is a file its notebook wrote.</p>"
            "<ul>"
            + "".join(f'<li><a href="#{s}">{s}</a></li>' for s in catalogue.NOTEBOOKS)
            + "</ul>"
            + "".join(sections),
        )
    )
    return index


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{body}</body></html>\n"
    )


def _section(stem: str, folder: Path, out: Path) -> str:
    """The index section of one notebook; converts the notebook and copies its figures and tables."""
    head = f'<h2 id="{stem}">{stem}</h2>'
    provenance_file = folder / "provenance.json"
    if not provenance_file.exists():
        return head + "<p>Not run in this profile.</p>"
    record = json.loads(provenance_file.read_text())
    assets = out / stem
    assets.mkdir()
    parts = [head]
    executed = folder / f"{stem}.ipynb"
    if executed.exists():
        _convert(executed, out / f"{stem}.html")
        parts.append(f'<p><a href="{stem}.html">The executed notebook</a></p>')
    parts.append(_provenance(record))
    for output in record.get("outputs", []):
        file, caption = output["file"], html.escape(output["caption"])
        if not (folder / file).exists():
            continue
        shutil.copy2(folder / file, assets / file)
        text = output.get("finding", "")
        finding = f'<p class="finding"><b>What this shows:</b> {html.escape(text)}</p>' if text else ""
        if file.endswith(".png"):
            parts.append(
                f'<figure><img src="{stem}/{file}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'
                + finding
            )
        elif file.endswith(".csv"):
            table = pd.read_csv(folder / file)
            shown = table.head(TABLE_ROWS).to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4g}")
            more = f" (first {TABLE_ROWS} of {len(table):,} rows)" if len(table) > TABLE_ROWS else ""
            parts.append(
                f'<p class="caption">{caption}{more} · <a href="{stem}/{file}">{file}</a></p><details'
                f"{' open' if len(table) <= TABLE_ROWS else ''}><summary>table</summary>{shown}</details>" + finding
            )
    return "".join(parts)


def _provenance(record: dict) -> str:
    code = record.get("code", {})
    facts = {
        "finished": record.get("finished"),
        "started": record.get("started"),
        "wall time (min)": f"{record['wall_time_s'] / 60:.1f}" if record.get("wall_time_s") else None,
        "commit": f"{code.get('commit', '')[:10]}{' (uncommitted changes)' if code.get('dirty') else ''}",
        "seed": record.get("seed"),
    }
    rows = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items() if v is not None)
    details = {
        "parameters": record.get("parameters", {}),
        "packages": record.get("packages", {}),
        "data files (SHA-256)": record.get("data_files", {}),
    }
    blocks = "".join(
        f"<details><summary>{name}</summary><table>"
        + "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(json.dumps(v))}</td></tr>" for k, v in items.items()
        )
        + "</table></details>"
        for name, items in details.items()
        if isinstance(items, dict)
    )
    return f"<table>{rows}</table>{blocks}"


def _convert(notebook: Path, target: Path) -> None:
    """An executed notebook as one HTML page, figures embedded (nbconvert, lab template)."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nbformat.read(notebook, as_version=4))
    target.write_text(body)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlib.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu", help="whose results: results/<profile>/ (default cpu)")
    parser.add_argument("--out", type=Path, default=SITE_DIR, help="site folder (default site/)")
    args = parser.parse_args(argv)
    try:
        index = build(args.profile, site=args.out)
    except FileNotFoundError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"report: {index}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
