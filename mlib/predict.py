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
are predicted; the exit code is non-zero only when nothing could be predicted.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import dgl
import pandas as pd
import torch

from mlib import catalogue, model_file
from mlib.graphs.atom_features import MAX_Z
from mlib.graphs.featurize import to_graph
from mlib.graphs.neighbors import NeighborError, featurize_one, to_structure
from mlib.paths import RESULTS_DIR

DEFAULT_MODEL = (
    RESULTS_DIR / "cpu" / "store" / "02_train" / "thermal" / "aflow" / "reference" / "ensemble" / "ensemble.json"
)


def load_models(path: Path) -> tuple[list[model_file.SavedModel], float]:
    """The model(s) of a model file or an ensemble manifest, and the spread's calibration factor."""
    if path.suffix != ".json":
        return [model_file.load(path)], 1.0
    try:
        manifest = json.loads(path.read_text())
        members = [model_file.load(path.parent / member) for member in manifest["members"]]
        scale = float(manifest["spread_scale"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not an ensemble manifest of the study ({type(exc).__name__}: {exc})") from None
    specs = {m.spec for m in members}
    targets = {m.info["target"] for m in members}
    if len(specs) != 1 or len(targets) != 1:
        raise ValueError(
            f"{path}: the members differ in graphs or target ({specs}, {targets}); they cannot be averaged"
        )
    return members, scale


def read_inputs(paths: Sequence[str | Path]) -> pd.DataFrame:
    """``id`` and ``cif`` text of every crystal named: CIF files, folders of CIF files, CSVs (id, cif)."""
    rows = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(path.glob("*.cif"))
            if not files:
                raise FileNotFoundError(f"{path} holds no *.cif file")
            rows += [{"id": str(f), "cif": f.read_text()} for f in files]
        elif path.suffix.lower() == ".csv":
            frame = pd.read_csv(path)
            missing = {"id", "cif"} - set(frame.columns)
            if missing:
                raise ValueError(f"{path}: missing column(s) {sorted(missing)}; a CSV needs id and cif")
            rows += [{"id": str(r.id), "cif": r.cif} for r in frame.itertuples()]
        elif path.is_file():
            rows.append({"id": str(path), "cif": path.read_text()})
        else:
            raise FileNotFoundError(f"{path} does not exist")
    return pd.DataFrame(rows, columns=["id", "cif"])


def _graph(cif: str, spec) -> tuple[dgl.DGLGraph | None, str, str]:
    """(graph, formula, reason): the graph of one CIF, or None with the reason it cannot be predicted."""
    try:
        structure = to_structure(cif if isinstance(cif, str) else "")
    except NeighborError as exc:
        return None, "", str(exc)
    formula = structure.composition.reduced_formula
    if not structure.is_ordered:
        return None, formula, "partial occupancy: only ordered structures can become crystal graphs"
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
    members, scale = load_models(path)
    saved = members[0]
    inputs = read_inputs(paths)
    target = saved.info["target"]
    unit = catalogue.TARGETS[target].unit if target in catalogue.TARGETS else saved.info.get("unit") or ""
    rows = []
    for entry in inputs.itertuples():
        graph, formula, reason = _graph(entry.cif, saved.spec)
        values = (
            torch.cat([m.scaler.decode(m.model(graph)) for m in members])
            if graph is not None
            else torch.full((1,), float("nan"))
        )
        spread = float(values.std() * scale) if len(members) > 1 and graph is not None else float("nan")
        rows.append(
            {
                "id": entry.id,
                "formula": formula,
                "prediction": float(values.mean()),
                "unit": unit,
                "spread": spread,
                "status": "ok" if graph is not None else "not predicted",
                "reason": reason,
            }
        )
    frame = pd.DataFrame(rows, columns=["id", "formula", "prediction", "unit", "spread", "status", "reason"])
    return frame.assign(
        target=target,
        model=saved.info["name"] if len(members) == 1 else f"ensemble of {len(members)} {saved.info['name']}",
        dataset=saved.info["dataset"],
        trained=saved.info["saved"],
        commit=saved.info.get("commit"),
    )


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
    shown = table[["id", "formula", "prediction", "spread", "unit", "status", "reason"]]
    print(shown.to_string(index=False))
    first = table.iloc[0]
    print(
        f"model: {first['model']} for {first['target']}, trained on {first['dataset']} ({first['trained']}, "
        f"commit {str(first['commit'])[:7]})"
    )
    if args.out:
        table.to_csv(args.out, index=False)
        print(f"written to {args.out}")
    predicted = int((table["status"] == "ok").sum())
    if predicted < len(table):
        print(f"{len(table) - predicted} of {len(table)} crystals could not be predicted (see reason)", file=sys.stderr)
    return 0 if predicted else 1


if __name__ == "__main__":
    raise SystemExit(main())
