"""CrabNet's composition-only benchmark split of AFLOW thermal expansion, and its mapping onto AFLOW records.

The split (train/val/test CSVs of ``formula,target``, one row per distinct formula) comes from
anthony-wang/CrabNet (``data/benchmark_data/aflow__agl_thermal_expansion_300K``, MIT): the mirror's copy
(``aflow-agl/crabnet-tec/``) or a download checked against the same SHA-256 digests.

Mapping rule (:func:`match_records`): a CrabNet formula is matched to the AFLOW AGL entries of the same
reduced formula; the entry whose label lies closest to CrabNet's target is taken if the two differ by at
most ``tolerance`` (relative). CrabNet's targets are AFLOW's own numbers, but from an older AFLOW release
(and averaged over duplicate formulas), so most differ from today's labels in the 4th digit. Formulas
without an AFLOW entry, with none within the tolerance, or whose entry has no geometry are left out and
counted by reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from mlib import published
from mlib.data import aflow
from mlib.data.download import fetch
from mlib.data.mirror import mirror_file
from mlib.paths import cache_dir

PARTS = ("train", "val", "test")
URL = "https://raw.githubusercontent.com/anthony-wang/CrabNet/master/data/benchmark_data/aflow__agl_thermal_expansion_300K/{part}.csv"
SHA256 = {
    "train": "bf937cad2af75702f16a82728fd52691a67e584b530f5bb703e762d1d92b11fe",
    "val": "026a3632b4f6fb247d2efc40d19c7ae79f092363ca221a4cec057e390cd88fdf",
    "test": "06eb26c729554f9e22046b8b818bb085a471c851b2147acb3049a99d32c06c8f",
}
TOLERANCE = 0.01  # relative difference between CrabNet's target and the AFLOW label of a matched entry


def load_split(source: str = "auto", url: str = URL) -> pd.DataFrame:
    """CrabNet's split: ``formula``, ``target`` (1/K), ``part`` (train, val, test), ``reduced_formula``."""
    from pymatgen.core import Composition

    frames = []
    for part in PARTS:
        if aflow.resolve_source(source) == "mirror":
            path = mirror_file(f"aflow-agl/crabnet-tec/{part}.csv")
        else:
            path = fetch(url.format(part=part), cache_dir("crabnet") / f"{part}.csv", checksum=("sha256", SHA256[part]))
        frames.append(pd.read_csv(path).assign(part=part))
    split = pd.concat(frames, ignore_index=True)
    split["reduced_formula"] = [Composition(f).reduced_formula for f in split["formula"]]
    return split


def match_records(
    split: pd.DataFrame, records: pd.DataFrame, tolerance: float = TOLERANCE
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CrabNet rows matched to AFLOW entries (``records``: :func:`mlib.data.thermal.records_frame`), and the
    count per part of what was matched and what was left out, by reason.

    The matched frame holds the AFLOW entry (id, structure ``source``, space group, AFLOW label as
    ``aflow_label``) with CrabNet's ``target`` and ``part``; ``relative_difference`` between the two labels.
    """
    candidates = split.reset_index(names="row").merge(
        records[["id", "reduced_formula", "spacegroup", "thermal_expansion", "source", "nspecies"]],
        on="reduced_formula",
        how="left",
    )
    candidates["relative_difference"] = (candidates["thermal_expansion"] - candidates["target"]).abs() / candidates[
        "target"
    ].abs()
    closest = candidates.sort_values(["row", "relative_difference"]).groupby("row").head(1).set_index("row")
    reason = pd.Series("matched", index=closest.index)
    reason[closest["id"].isna()] = "no AFLOW entry of the formula"
    reason[closest["id"].notna() & ~(closest["relative_difference"] <= tolerance)] = f"no label within {tolerance:.0%}"
    reason[(reason == "matched") & closest["source"].isna()] = "matched entry has no geometry"
    counts = (
        pd.crosstab(reason, closest["part"])
        .reindex(columns=list(PARTS), fill_value=0)
        .rename_axis(index="outcome", columns=None)
        .reset_index()
    )
    counts["all"] = counts[list(PARTS)].sum(axis=1)
    matched = closest[reason == "matched"].rename(columns={"thermal_expansion": "aflow_label"})
    return matched.reset_index(drop=True), counts


@dataclass(frozen=True)
class Published:
    """A composition model's published test predictions on CrabNet's split: the mirror's copy (``formula,
    actual, predicted[, uncertainty]``) and the file in CrabNet's ``publication_predictions/`` with its columns'
    names there."""

    model: str
    mirror: str
    path: str
    columns: dict[str, str]  # the published file's column -> formula, actual, predicted, uncertainty


PREDICTIONS_URL = "https://raw.githubusercontent.com/anthony-wang/CrabNet/master/publication_predictions/{path}"
TEC = "aflow__agl_thermal_expansion_300K"
PUBLISHED = (
    Published(
        "Roost",
        "roost_test.csv",
        f"roost_benchmark__predictions/test_results_{TEC}_model_300_epochs.csv",
        {"composition": "formula", "target": "actual", "pred-0": "predicted", "aleatoric-0": "uncertainty"},
    ),
    Published("CrabNet", "crabnet_test.csv", f"mat2vec_benchmark__predictions/{TEC}_test_output.csv", {}),
    Published("HotCrab", "hotcrab_test.csv", f"onehot_benchmark__predictions/{TEC}_test_output.csv", {}),
    Published("random forest", "rf_test.csv", f"rf_benchmark__predictions/{TEC}_test_output.csv", {}),
    Published("ElemNet", "elemnet_test.csv", f"elemnet_benchmark__predictions/{TEC}_test.csv", {}),
)


class BadPublished(ValueError):
    """A published prediction file that is not what the CrabNet paper published."""


def load_published(source: str = "auto", url: str = PREDICTIONS_URL) -> pd.DataFrame:
    """Every model's published test predictions: ``model``, ``formula``, ``reduced_formula``, ``actual``,
    ``predicted`` (1/K). The mirror's copies are checked by ``SHA256SUMS``; a download from CrabNet's repository
    (the files carry no published digest) is checked by its columns and by the test MAE the CrabNet paper reports
    for the model (:data:`mlib.published.COMPOSITION_ONLY_TEC`, to its three digits)."""
    from pymatgen.core import Composition

    frames = []
    for entry in PUBLISHED:
        if aflow.resolve_source(source) == "mirror":
            frame = pd.read_csv(mirror_file(f"aflow-agl/crabnet-tec/predictions/{entry.mirror}"))
        else:
            path = fetch(url.format(path=entry.path), cache_dir("crabnet") / "predictions" / entry.mirror)
            frame = _checked(pd.read_csv(path).rename(columns=entry.columns), entry, path)
        frame = frame.assign(model=entry.model)
        frame["reduced_formula"] = [Composition(f).reduced_formula for f in frame["formula"]]
        frames.append(frame[["model", "formula", "reduced_formula", "actual", "predicted"]])
    return pd.concat(frames, ignore_index=True)


def _checked(frame: pd.DataFrame, entry: Published, path: object) -> pd.DataFrame:
    """A downloaded file with the published columns and, where the paper reports one, its test MAE."""
    missing = {"formula", "actual", "predicted"} - set(frame.columns)
    if missing or frame.empty:
        raise BadPublished(f"{path}: no {sorted(missing)} columns or no rows; not CrabNet's {entry.model} predictions")
    reported = published.COMPOSITION_ONLY_TEC.get(entry.model)
    mae = float((frame["predicted"] - frame["actual"]).abs().mean())
    if reported is not None and f"{mae:.3g}" != f"{reported:.3g}":
        raise BadPublished(f"{path}: test MAE {mae:.4g} 1/K, not the {reported:.3g} the CrabNet paper reports")
    return frame
