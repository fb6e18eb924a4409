"""The study's one model file format: a trained model with everything needed to use it again.

A model file (``model.pt``) holds the format name and version, the model name and constructor
arguments, its weights, the target with its unit, the target scaling, the graph specification
(kind, radius, neighbour cap, tie order, featuriser version), the data set it was trained
on with the digest of its crystals and targets, and free-form details of the run (configuration,
date, commit). :func:`load` refuses a file of another format or version with a message saying so, and reads
every file with ``weights_only=True``: a file that asks for any Python object beyond tensors and plain
containers is refused before anything in it runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from torch import nn

from mlib import catalogue, store
from mlib.graphs import atom_features
from mlib.graphs.neighbors import GraphSpec, featurizer_version
from mlib.models.registry import MODEL_CODE_VERSION, build_model, foreign_library
from mlib.provenance import git_state
from mlib.scaling import Standardizer

FORMAT = "mlib-model"
# 1: the unversioned files of mlib before the run store (no graph spec, no data digest); 2: the atom-feature
# source recorded with the graphs (always pymatgen), not among the model's arguments.
FORMAT_VERSION = 3


class ModelFileError(ValueError):
    """A file that is not a model file of this format and version."""


@dataclass
class SavedModel:
    """A loaded model file: the model (eval mode), its target scaling and the file's metadata."""

    model: nn.Module
    scaler: Standardizer
    info: dict[str, Any]

    @property
    def spec(self) -> GraphSpec:
        """The graphs the model reads (as it was trained)."""
        graph = self.info["graph"]
        return GraphSpec(
            radius=graph["radius"],
            max_neighbors=graph["max_neighbors"],
            kind=graph["kind"],
            tie_order=graph["tie_order"],
        )


def graph_info(spec: GraphSpec) -> dict[str, Any]:
    """What a model file records about the graphs its model reads."""
    return {**asdict(spec), "featurizer_version": featurizer_version(spec.kind)}


def save(
    path: Path,
    model: nn.Module,
    *,
    target: str | None,
    scaler: Standardizer,
    spec: GraphSpec,
    dataset: str,
    data_digest: str | None,
    details: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` and its metadata to ``path`` (atomically)."""
    unit = catalogue.TARGETS[target].unit if target in catalogue.TARGETS else None
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": model.name,
        "hyper": model.hyper,
        "model_code_version": MODEL_CODE_VERSION,
        "library": foreign_library(model.name),
        "state": model.state_dict(),
        "target": target,
        "unit": unit,
        "scaler": asdict(scaler),
        "graph": graph_info(spec),
        "dataset": dataset,
        "data_digest": data_digest,
        "saved": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_state().get("commit"),
        "details": store.canonical(details or {}),
    }
    return store.save_torch(Path(path), record)


def read(path: Path) -> dict[str, Any]:
    """The raw record of a model file, after checking its format and version."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        record = store.load_torch(path)
    except store.UntrustedFile as exc:
        raise ModelFileError(str(exc)) from None
    except Exception as exc:  # a truncated or foreign file
        raise ModelFileError(
            f"{path} cannot be read as a model file ({type(exc).__name__}: {exc}); "
            "it is damaged or not a model file: retrain it or restore a copy"
        ) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ModelFileError(
            f"{path} is not an {FORMAT} file (format version 1 files, written before the run "
            f"store, lack the graph specification and data digest: retrain the model)"
        )
    if record["format_version"] != FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has model-file format version {record['format_version']}; this mlib reads "
            f"version {FORMAT_VERSION}: use the mlib version that wrote it, or retrain"
        )
    return record


def check_compatible(record: dict[str, Any], path: Path) -> None:
    """Refuse a model file whose weights belong to another implementation or graphs than this mlib builds (e.g.
    MEGNet or M3GNet trained on matgl 1.0.0's DGL graphs), with a message saying what to do."""
    graph = record["graph"]
    made, now = graph.get("featurizer_version"), featurizer_version(graph["kind"])
    if made != now:
        raise ModelFileError(
            f"{path} was trained on {graph['kind']} graphs of featuriser version {made}; this mlib builds version "
            f"{now} (matgl graphs: 1 = matgl 1.0.0's DGL graphs, 2 = matgl 4's PyG graphs): retrain the model"
        )
    current = foreign_library(record["name"])
    if current is not None and record.get("library") != current:
        saved = record.get("library") or "an earlier matgl"
        raise ModelFileError(f"{path} holds {record['name']} weights of {saved}; this mlib runs {current}: retrain")


def load(path: Path) -> SavedModel:
    """A model file's model (eval mode), target scaling and metadata."""
    record = read(path)
    check_compatible(record, Path(path))
    with atom_features.from_weights():  # the weights hold the atom-feature table
        model = build_model(record["name"], **record["hyper"])
    model.load_state_dict(record["state"])
    info = {k: v for k, v in record.items() if k != "state"}
    return SavedModel(model.eval(), Standardizer(**record["scaler"]), info)
