"""Predict a property of your own crystals with a trained model of the study.

    python -m mlib.predict my.cif other.cif                 # the thermal-expansion ensemble of 02_train (cpu profile)
    python -m mlib.predict cifs/ --model path/to/model.pt  # every *.cif of a folder, any saved model
    python -m mlib.predict my.cif --model path/to/ensemble.json  # an ensemble: mean prediction and its spread
    python -m mlib.predict crystals.csv --out predictions.csv   # a CSV with columns id and cif

Each crystal becomes a graph exactly as the model's training crystals did (the graph specification is
read from the model file). With an ensemble manifest (``ensemble.json`` of 02_train) the prediction is the
members' mean and ``spread`` their standard deviation times the manifest's calibration factor (fitted so
that one spread holds 68 % of validation errors). A crystal that cannot be predicted (unparsable CIF, partial occupancy, element
without features, atom without a neighbour in the radius) gets its reason in the output, and the others
are predicted; the exit code is non-zero only when nothing could be predicted. Where the model file has a
``domain.pt`` beside it (:mod:`mlib.domain`), each crystal also gets ``domain_percentile`` (how far its crystal
vector lies from the training crystals', as a percentile of the validation crystals' distances) and
``out_of_domain`` (beyond their 95 %: the model has seen little like it).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import dgl
import numpy as np
import pandas as pd
import torch

from mlib import catalogue, domain, model_file, store, store_paths
from mlib.data.text_files import UnreadableCSV, decode, parse_csv
from mlib.domain import Domain
from mlib.graphs.atom_features import MAX_Z
from mlib.graphs.featurize import to_graph
from mlib.graphs.neighbors import NeighborError, featurize_one, to_structure
from mlib.paths import RESULTS_DIR

DEFAULT_MODEL = store_paths.ensemble_file(RESULTS_DIR / "cpu" / "store", "aflow", split=0)


def load_models(path: Path) -> tuple[list[model_file.SavedModel], float, list[Domain | None]]:
    """The model(s) of a model file or an ensemble manifest, the spread's calibration factor, and each model's
    domain (``domain.pt`` beside its file; None where it has none)."""
    if path.suffix != ".json":
        return [model_file.load(path)], 1.0, [domain.beside(path)]
    try:
        manifest = json.loads(path.read_text())
        files = [path.parent / member for member in manifest["members"]]
        members = [model_file.load(file) for file in files]
        scale = float(manifest["spread_scale"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not an ensemble manifest of the study ({type(exc).__name__}: {exc})") from None
    specs = {m.spec for m in members}
    targets = {m.info["target"] for m in members}
    if len(specs) != 1 or len(targets) != 1:
        raise ValueError(
            f"{path}: the members differ in graphs or target ({specs}, {targets}); they cannot be averaged"
        )
    return members, scale, [domain.beside(file) for file in files]


def read_inputs(paths: Sequence[str | Path]) -> pd.DataFrame:
    """``id``, ``cif`` text and ``reason`` of every crystal named: CIF files, folders of CIF files (``*.cif`` in
    any case), CSVs (id, cif). Each file is read on its own: one that cannot be read (not text, not a CSV, no
    rows, missing columns) becomes a row with its reason instead of stopping the others."""
    rows: list[dict[str, str | None]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() == ".cif")
            if not files:
                rows.append(_unread(path, "folder holds no *.cif file"))
            rows += [_cif_row(f) for f in files]
        elif path.suffix.lower() == ".csv" and path.is_file():
            rows += _csv_rows(path)
        elif path.is_file():
            rows.append(_cif_row(path))
        else:
            rows.append(_unread(path, "does not exist"))
    return pd.DataFrame(rows, columns=["id", "cif", "reason"])


def _unread(path: Path, reason: str) -> dict[str, str | None]:
    return {"id": str(path), "cif": None, "reason": reason}


def _cif_row(path: Path) -> dict[str, str | None]:
    try:
        text = decode(path.read_bytes())
    except OSError as exc:
        return _unread(path, f"cannot be read ({exc.strerror})")
    if text is None:
        return _unread(path, "not a text file (binary data), so not a CIF")
    if not text.strip():
        return _unread(path, "empty file")
    return {"id": str(path), "cif": text, "reason": None}


def _csv_rows(path: Path) -> list[dict[str, str | None]]:
    try:
        text = decode(path.read_bytes())
        if text is None:
            return [_unread(path, "not a text file (binary data), so not a CSV")]
        frame = parse_csv(text)
    except OSError as exc:
        return [_unread(path, f"cannot be read ({exc.strerror})")]
    except UnreadableCSV as exc:
        if exc.empty:
            return [_unread(path, "empty file; a CSV needs a header row (id, cif) and one row per crystal")]
        return [_unread(path, f"cannot be read as a CSV ({exc})")]
    missing = {"id", "cif"} - set(frame.columns)
    if missing:
        return [_unread(path, f"lacks column(s) {sorted(missing)}; a CSV needs id and cif")]
    if frame.empty:
        return [_unread(path, "has a header row but no crystals")]
    return [
        {"id": r.id, "cif": r.cif or None, "reason": None if r.cif.strip() else "no CIF text in this row"}
        for r in frame.itertuples()
    ]


def _graph(cif: str, spec) -> tuple[dgl.DGLGraph | None, str, str]:
    """(graph, formula, reason): the graph of one CIF, or None with the reason it cannot be predicted."""
    try:
        structure = to_structure(cif)
    except NeighborError as exc:
        return None, "", str(exc)
    formula = structure.composition.reduced_formula
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, result = featurize_one(("crystal", structure), spec, MAX_Z)
    if isinstance(result, tuple):
        return None, formula, result[1]
    return to_graph(result), formula, ""


@torch.no_grad()
def predict(paths: Sequence[str | Path], model_path: str | Path = DEFAULT_MODEL) -> pd.DataFrame:
    """One row per crystal: prediction in the model's unit, or the reason there is none; the model's provenance."""
    path = Path(model_path)
    if not path.exists():
        raise FileNotFoundError(
            f'no model at {path}; train one with `make reproduce ARGS="--only 01 02"` or give --model'
        )
    members, scale, domains = load_models(path)
    checked = all(d is not None for d in domains)
    saved = members[0]
    inputs = read_inputs(paths)
    target = saved.info["target"]
    unit = catalogue.TARGETS[target].unit if target in catalogue.TARGETS else saved.info.get("unit") or ""
    rows = []
    for entry in inputs.itertuples():
        graph, formula, reason = (None, "", entry.reason) if entry.reason else _graph(entry.cif, saved.spec)
        values = (
            torch.cat([m.scaler.decode(m.model(graph)) for m in members])
            if graph is not None
            else torch.full((1,), float("nan"))
        )
        spread = float(values.std() * scale) if len(members) > 1 and graph is not None else float("nan")
        percentile, outside = float("nan"), None
        if checked and graph is not None:  # each member's distance, read against its own validation crystals
            distances = [d.distances(m.model.embed(graph).numpy())[0] for m, d in zip(members, domains)]
            percentile = float(np.median([d.percentiles(np.array([x]))[0] for d, x in zip(domains, distances)]))
            outside = int(sum(bool(d.flags(np.array([x]))[0]) for d, x in zip(domains, distances))) > len(members) / 2
        rows.append(
            {
                "id": entry.id,
                "formula": formula,
                "prediction": float(values.mean()),
                "unit": unit,
                "spread": spread,
                "domain_percentile": percentile,
                "out_of_domain": outside,
                "status": "ok" if graph is not None else "not predicted",
                "reason": reason,
            }
        )
    columns = ["id", "formula", "prediction", "unit", "spread", "domain_percentile", "out_of_domain", "status"]
    frame = pd.DataFrame(rows, columns=[*columns, "reason"])
    return frame.assign(
        target=target,
        model=saved.info["name"] if len(members) == 1 else f"ensemble of {len(members)} {saved.info['name']}",
        dataset=saved.info["dataset"],
        trained=saved.info["saved"],
        commit=saved.info.get("commit"),
    )


def shown(table: pd.DataFrame) -> pd.DataFrame:
    """The table as the terminal shows it: prediction and spread in the target's display unit (thermal
    expansion in 10^-6 1/K), four significant digits."""
    target = catalogue.TARGETS.get(str(table["target"].iloc[0]))
    scale, unit = (target.scale, target.axis_unit) if target else (1.0, str(table["unit"].iloc[0]))
    view = table[
        ["id", "formula", "prediction", "spread", "domain_percentile", "out_of_domain", "status", "reason"]
    ].copy()
    view[["prediction", "spread"]] = view[["prediction", "spread"]] / scale
    return view.rename(columns={"prediction": f"prediction ({unit})", "spread": f"spread ({unit})"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlib.predict", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("inputs", nargs="+", help="CIF files, folders of CIF files, or CSVs with columns id, cif")
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL, help="a model file (model.pt) or ensemble manifest (ensemble.json)"
    )
    parser.add_argument("--out", type=Path, help="write the predictions to this CSV")
    args = parser.parse_args(argv)
    try:
        table = predict(args.inputs, args.model)
    except (FileNotFoundError, ValueError, model_file.ModelFileError) as exc:
        parser.exit(2, f"error: {exc}\n")
    print(shown(table).to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep=""))
    first = table.iloc[0]
    print(
        f"model: {first['model']} for {first['target']}, trained on {first['dataset']} ({first['trained']}, "
        f"commit {str(first['commit'])[:7]})"
    )
    if table["domain_percentile"].notna().any():
        flagged = int(table["out_of_domain"].eq(True).sum())
        print(
            "domain: where each crystal's distance to the training crystals (crystal vectors, k nearest) falls among "
            f"the validation crystals' (percentile); out_of_domain beyond their {domain.QUANTILE:.0%}: {flagged} of "
            f"{len(table)} crystals, whose predictions deserve less trust"
        )
    else:
        print(f"domain: not checked (no {domain.DOMAIN_FILE} beside the model file)")
    if args.out:
        store.write_csv(args.out, table)
        print(f"written to {args.out} (values in {first['unit']}, full precision)")
    predicted = int((table["status"] == "ok").sum())
    if predicted < len(table):
        print(f"{len(table) - predicted} of {len(table)} crystals could not be predicted (see reason)", file=sys.stderr)
    return 0 if predicted else 1


if __name__ == "__main__":
    raise SystemExit(main())
