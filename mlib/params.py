"""Parameters of each notebook, checked before any work starts.

Papermill only warns about parameters a notebook does not declare, so every notebook's second
cell calls :func:`check` and the runner checks profiles and ``-p`` overrides against the same
dataclasses: a wrong name or value fails fast with a message naming it.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ParameterError(ValueError):
    """A notebook parameter is unknown or has a bad value."""


@dataclass(frozen=True)
class NotebookParams:
    """Parameters every notebook takes: where to write, which profile produced the run, the seed."""

    out_dir: str
    profile: str = "cpu"
    seed: int = 0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_type(type(self).__name__, f.name, getattr(self, f.name), _hints(type(self))[f.name])
        self.validate()

    def validate(self) -> None:
        """Value checks beyond types; subclasses extend."""
        if self.seed < 0:
            raise ParameterError(f"seed must be >= 0, got {self.seed}")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DataParams(NotebookParams):
    """01_data: data sets, their statistics and crystal graphs."""

    thermal_datasets: list[str] = field(default_factory=lambda: ["aflow", "aflow+mp-join"])
    aflow_source: str = "auto"
    mp_limit: int | None = None
    radius: float = 8.0
    max_neighbors: int = 12
    workers: int = 2
    strict: bool = False

    def validate(self) -> None:
        super().validate()
        from mlib.data.thermal import THERMAL_DATASETS

        unknown = [d for d in self.thermal_datasets if d not in THERMAL_DATASETS]
        if unknown:
            raise ParameterError(f"unknown thermal data set(s) {unknown}; choose from {sorted(THERMAL_DATASETS)}")
        if self.aflow_source not in ("auto", "mirror", "live"):
            raise ParameterError(f"aflow_source must be 'auto', 'mirror' or 'live', got {self.aflow_source!r}")
        if self.mp_limit is not None and self.mp_limit <= 0:
            raise ParameterError(f"mp_limit must be positive or None, got {self.mp_limit}")
        if self.radius <= 0:
            raise ParameterError(f"radius must be > 0 A, got {self.radius}")
        if self.max_neighbors <= 0:
            raise ParameterError(f"max_neighbors must be > 0, got {self.max_neighbors}")
        if self.workers <= 0:
            raise ParameterError(f"workers must be > 0, got {self.workers}")


@dataclass(frozen=True)
class TrainParams(NotebookParams):
    """02_train: CGCNN on thermal expansion (paper's best setting by default) and on MP formation energy."""

    dataset: str = "aflow"
    thermal_limit: int | None = None
    conv_layers: int = 3
    hidden: int = 64
    head_hidden: int = 128
    batch_size: int = 64
    lr: float = 0.01
    weight_decay: float = 0.0
    epochs: int = 200
    mp_dataset: str | None = "mp-cgcnn"
    mp_target: str = "formation_energy_per_atom"
    mp_limit: int | None = None
    mp_epochs: int = 30
    resume: bool = True
    radius: float = 8.0
    max_neighbors: int = 12
    workers: int = 2

    def validate(self) -> None:
        super().validate()
        from mlib.data.mp import MP_TARGETS
        from mlib.data.thermal import THERMAL_DATASETS
        from mlib.datasets import MP_DATASETS

        if self.dataset not in THERMAL_DATASETS:
            raise ParameterError(f"unknown data set {self.dataset!r}; choose from {sorted(THERMAL_DATASETS)}")
        if self.mp_dataset is not None and self.mp_dataset not in MP_DATASETS:
            raise ParameterError(f"unknown MP data set {self.mp_dataset!r}; choose from {sorted(MP_DATASETS)} or None")
        if self.mp_target not in MP_TARGETS:
            raise ParameterError(f"unknown MP target {self.mp_target!r}; choose from {list(MP_TARGETS)}")
        for name in ("conv_layers", "hidden", "head_hidden", "batch_size", "epochs", "mp_epochs", "max_neighbors",
                     "workers"):
            if getattr(self, name) <= 0:
                raise ParameterError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("thermal_limit", "mp_limit"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ParameterError(f"{name} must be positive or None, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ParameterError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ParameterError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.radius <= 0:
            raise ParameterError(f"radius must be > 0 A, got {self.radius}")


@dataclass(frozen=True)
class EmbedParams(NotebookParams):
    """04_embed: t-SNE and PCA maps of the crystal vectors of 02_train's thermal-expansion model."""

    dataset: str = "aflow"
    model_path: str | None = None
    crystals: str = "test"
    perplexity: float = 30.0
    knn_k: int = 10
    n_labels: int = 3
    radius: float = 8.0
    max_neighbors: int = 12
    workers: int = 2

    def validate(self) -> None:
        super().validate()
        from mlib.data.thermal import THERMAL_DATASETS

        if self.dataset not in THERMAL_DATASETS:
            raise ParameterError(f"unknown data set {self.dataset!r}; choose from {sorted(THERMAL_DATASETS)}")
        if self.crystals not in ("test", "all"):
            raise ParameterError(f"crystals must be 'test' or 'all', got {self.crystals!r}")
        if self.perplexity <= 0:
            raise ParameterError(f"perplexity must be > 0, got {self.perplexity}")
        for name in ("knn_k", "workers", "max_neighbors"):
            if getattr(self, name) <= 0:
                raise ParameterError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.n_labels < 0:
            raise ParameterError(f"n_labels must be >= 0, got {self.n_labels}")

    def trained_model(self) -> str:
        """``model_path``, or 02_train's thermal model beside this run's output folder."""
        from pathlib import Path

        return self.model_path or str(Path(self.out_dir).parent / "02_train" / "thermal" / "model.pt")


@dataclass(frozen=True)
class SweepParams(NotebookParams):
    """03_sweep: the paper's CGCNN grid on Optuna, exhaustive or pruned, resumable in an RDB storage."""

    dataset: str = "aflow"
    thermal_limit: int | None = None
    sampler: str = "tpe"
    pruner: str = "hyperband"
    epochs: int = 200
    n_trials: int | None = 60
    timeout_min: float | None = None
    storage: str | None = None
    study_name: str = "cgcnn-thermal"
    search_space: dict | None = None
    radius: float = 8.0
    max_neighbors: int = 12
    workers: int = 2

    def validate(self) -> None:
        super().validate()
        from mlib.data.thermal import THERMAL_DATASETS
        from mlib.sweep import SweepError

        if self.dataset not in THERMAL_DATASETS:
            raise ParameterError(f"unknown data set {self.dataset!r}; choose from {sorted(THERMAL_DATASETS)}")
        if self.sampler not in ("grid", "tpe"):
            raise ParameterError(f"sampler must be 'grid' or 'tpe', got {self.sampler!r}")
        if self.pruner not in ("none", "hyperband", "halving"):
            raise ParameterError(f"pruner must be 'none', 'hyperband' or 'halving', got {self.pruner!r}")
        for name in ("epochs", "workers", "max_neighbors"):
            if getattr(self, name) <= 0:
                raise ParameterError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("thermal_limit", "n_trials", "timeout_min"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ParameterError(f"{name} must be positive or None, got {getattr(self, name)}")
        try:
            self.space()
        except SweepError as exc:
            raise ParameterError(str(exc)) from None

    def space(self):
        """The search space: the paper's grid unless ``search_space`` narrows it."""
        from mlib.sweep import SearchSpace

        return SearchSpace.from_dict(self.search_space or {})

    def storage_url(self) -> str:
        """``storage`` or a SQLite file in the output folder."""
        from pathlib import Path

        return self.storage or f"sqlite:///{(Path(self.out_dir) / 'sweep.db').resolve()}"


PARAMS: dict[str, type[NotebookParams]] = {"01_data": DataParams, "02_train": TrainParams, "03_sweep": SweepParams,
                                           "04_embed": EmbedParams}


def params_class(notebook: str) -> type[NotebookParams]:
    """The parameter dataclass of a notebook, by its stem (``01_data``)."""
    try:
        return PARAMS[notebook]
    except KeyError:
        raise ParameterError(f"no parameter schema for notebook {notebook!r}; known: {sorted(PARAMS)}") from None


def names(notebook: str) -> set[str]:
    """The parameter names a notebook declares."""
    return {f.name for f in dataclasses.fields(params_class(notebook))}


def build(notebook: str, values: Mapping[str, Any]) -> NotebookParams:
    """Check ``values`` against the notebook's schema: unknown names, types and ranges."""
    cls = params_class(notebook)
    unknown = sorted(set(values) - names(notebook))
    if unknown:
        raise ParameterError(f"{notebook}: unknown parameter(s) {unknown}; known: {sorted(names(notebook))}")
    try:
        return cls(**values)
    except TypeError as exc:  # a required parameter is missing
        raise ParameterError(f"{notebook}: {exc}") from None


def check(notebook: str, namespace: Mapping[str, Any]) -> NotebookParams:
    """Pick the notebook's parameters out of a namespace (a notebook's ``globals()``) and check them."""
    return build(notebook, {k: namespace[k] for k in names(notebook) if k in namespace})


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_type(owner: str, name: str, value: Any, hint: Any) -> None:
    if not _matches(value, hint):
        raise ParameterError(f"{owner}.{name}: expected {_describe(hint)}, got {value!r} ({type(value).__name__})")


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (inner,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(v, inner) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
