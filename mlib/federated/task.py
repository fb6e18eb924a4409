"""What a Flower federation's server app and client app share: the model, a site's crystals, the settings.

A site brings either its own CSV (columns ``id``, ``cif`` and the target) or, to rehearse a
federation with the study's data, its shard of a data set's training split (``client-id`` of
``clients``, same partition and seed on every site). Both apps read their settings from Flower's run
config (server) and node config (site), with the defaults below; the apps import this module, never
each other.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from mlib import datasets
from mlib.catalogue import MP_SPLIT
from mlib.data.errors import BadEntry
from mlib.data.skips import Skips
from mlib.data.text_files import UnreadableCSV, decode, parse_csv
from mlib.federated.client import ClientData, client_data
from mlib.federated.partition import anion_elements, partition
from mlib.graphs.featurize import GraphSet, featurize
from mlib.graphs.neighbors import GraphSpec
from mlib.models.registry import build_model, graph_spec
from mlib.params import FedConfig
from mlib.training import split_indices

# The Flower App that ``flwr run`` submits; its ``[tool.flwr.app.config]`` is the server app's run config.
APP_DIR = Path(__file__).with_name("app")
RUN_CONFIG: dict[str, Any] = tomllib.loads((APP_DIR / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
# The node config of a site (``flower-supernode --node-config``) with its defaults.
NODE_CONFIG = {
    "data": "",
    "target": "formation_energy_per_atom",
    "dataset": "mp-cgcnn",
    "limit": 0,
    "partition": "iid",
    "client-id": 0,
    "clients": 5,
    "batch-size": 64,
    "model": "gcn",
    "hyper": "{}",
    "seed": 0,
}


class SiteDataError(ValueError):
    """A site's data cannot be used (missing file or columns, not a readable CSV)."""


@dataclass(frozen=True)
class ModelChoice:
    """The model both apps build: a registry name and its hyperparameters."""

    name: str
    hyper: dict

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelChoice:
        return cls(str(config["model"]), json.loads(str(config["hyper"]) or "{}"))

    def build(self) -> nn.Module:
        return build_model(self.name, **self.hyper)

    @property
    def spec(self) -> GraphSpec:
        return graph_spec(self.name, **self.hyper)


def with_defaults(config: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Flower's config over our defaults (unknown keys are an error naming the known ones)."""
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; known: {sorted(defaults)}")
    return {**defaults, **config}


def fed_config(run: dict[str, Any]) -> FedConfig:
    """The federation's settings from the server's run config."""
    return FedConfig(
        str(run["algorithm"]),
        int(run["num-server-rounds"]),
        int(run["local-epochs"]),
        float(run["mu"]),
        float(run["lr"]),
        seed=int(run["seed"]),
    )


def site_graphs(node: dict[str, Any]) -> tuple[GraphSet, np.ndarray]:
    """This site's graphs and the rows it trains on: its own CSV, or its shard of a data set's training split."""
    model, target = ModelChoice.from_config(node), str(node["target"])
    if node["data"]:
        path = Path(str(node["data"]))
        if not path.is_file():
            raise SiteDataError(f"site data {path} does not exist; give this site's CSV (id, cif, {target})")
        frame = read_site_csv(path, target)
        numeric, skips = numeric_targets(frame, target)
        graph_set = featurize(numeric, path.stem, model.spec).with_finite(target)
        graph_set.skips.extend(skips)
        report_skips(graph_set, len(frame), path.with_name(f"{path.stem}.skipped.csv"), int(node["client-id"]))
        return graph_set, np.arange(len(graph_set))
    limit = int(node["limit"]) or None
    graph_set = datasets.load_mp(str(node["dataset"]), limit=limit, spec=model.spec).with_finite(target)
    seed = int(node["seed"])
    train = split_indices(len(graph_set), seed, MP_SPLIT)["train"]
    shards = partition(
        train,
        int(node["clients"]),
        str(node["partition"]),
        seed,
        chemistry=anion_elements(graph_set.table["formula"]),
        target=graph_set.target(target).numpy(),
    )
    return graph_set, shards[int(node["client-id"])]


def read_site_csv(path: Path, target: str) -> pd.DataFrame:
    """A site's CSV (id, cif, target) as text columns; a file that is not a readable CSV with these columns is
    refused with one line naming it."""
    text = decode(path.read_bytes(), latin1=False)
    if text is None:
        raise SiteDataError(f"site data {path} is not UTF-8 text; give this site's CSV (id, cif, {target})")
    try:
        frame = parse_csv(text)
    except UnreadableCSV as exc:
        if exc.empty:
            raise SiteDataError(f"site data {path} is empty; give this site's CSV (id, cif, {target})") from None
        raise SiteDataError(f"site data {path} cannot be read as a CSV ({exc}); no crystal was used") from None
    missing = {"id", "cif", target} - set(frame.columns)
    if missing:
        raise SiteDataError(f"{path}: missing column(s) {sorted(missing)} (need id, cif, {target})")
    return frame.rename(columns={"cif": "source"})


def numeric_targets(frame: pd.DataFrame, target: str) -> tuple[pd.DataFrame, Skips]:
    """The rows whose ``target`` reads as a number (as floats); the others are counted skips with their text."""
    values = pd.to_numeric(frame[target].str.strip(), errors="coerce")
    skips = Skips()
    for entry_id, text in zip(frame["id"][values.isna()], frame[target][values.isna()]):
        if text.strip():
            skips.add(BadEntry(str(entry_id), f"{target} {text!r} is not a number", "target", f"non-numeric {target}"))
        else:
            skips.add(BadEntry(str(entry_id), f"no {target} value", "target", f"no {target}"))
    return frame[values.notna()].assign(**{target: values[values.notna()]}).reset_index(drop=True), skips


def report_skips(graph_set: GraphSet, total: int, path: Path, client: int) -> None:
    """Say how many of the site's crystals it uses and why the others were left out (written to ``path``)."""
    reasons = "; ".join(f"{row.count} {row.kind}" for row in graph_set.skips.summary().itertuples())
    line = f"site {client}: uses {len(graph_set):,} of {total:,} crystals"
    if len(graph_set.skips):
        graph_set.skips.table().to_csv(path, index=False)
        line += f"; skipped {len(graph_set.skips):,} ({reasons}), listed in {path}"
    print(line, flush=True)


def site_data(node: dict[str, Any]) -> ClientData:
    """This site's batches, seeded as client ``client-id`` of the in-process engine."""
    graph_set, rows = site_graphs(node)
    client = int(node["client-id"])
    shards = [np.array([], dtype=int)] * client + [rows]
    return client_data(
        graph_set.graphs, graph_set.target(str(node["target"])), shards, int(node["batch-size"]), int(node["seed"])
    )[client]
