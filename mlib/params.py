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
from pathlib import Path
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

    def positive(self, *names: str) -> None:
        """Each named parameter is > 0 (or None, where its type allows None)."""
        for name in names:
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ParameterError(f"{name} must be > 0, got {value}")

    def one_of(self, name: str, options, what: str | None = None) -> None:
        value = getattr(self, name)
        if value not in options:
            raise ParameterError(f"unknown {what or name} {value!r}; choose from {sorted(options)}")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class GraphParams(NotebookParams):
    """Parameters of notebooks that build crystal graphs: neighbour radius (A), cap, worker processes."""

    radius: float = 8.0
    max_neighbors: int = 12
    workers: int = 2

    def validate(self) -> None:
        super().validate()
        self.positive("radius", "max_neighbors", "workers")


def _thermal_datasets():
    from mlib.data.thermal import THERMAL_DATASETS

    return THERMAL_DATASETS


@dataclass(frozen=True)
class DataParams(GraphParams):
    """01_data: data sets, their statistics and crystal graphs."""

    thermal_datasets: list[str] = field(default_factory=lambda: ["aflow", "aflow+mp-join"])
    aflow_source: str = "auto"
    mp_limit: int | None = None
    strict: bool = False

    def validate(self) -> None:
        super().validate()
        unknown = [d for d in self.thermal_datasets if d not in _thermal_datasets()]
        if unknown:
            raise ParameterError(f"unknown thermal data set(s) {unknown}; choose from {sorted(_thermal_datasets())}")
        self.one_of("aflow_source", ("auto", "mirror", "live"))
        self.positive("mp_limit")


@dataclass(frozen=True)
class TrainParams(GraphParams):
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

    def validate(self) -> None:
        super().validate()
        from mlib.data.mp import MP_TARGETS
        from mlib.datasets import MP_DATASETS

        self.one_of("dataset", _thermal_datasets(), "data set")
        if self.mp_dataset is not None:
            self.one_of("mp_dataset", MP_DATASETS, "MP data set")
        self.one_of("mp_target", MP_TARGETS, "MP target")
        self.positive("conv_layers", "hidden", "head_hidden", "batch_size", "epochs", "mp_epochs", "thermal_limit",
                      "mp_limit", "lr")
        if self.weight_decay < 0:
            raise ParameterError(f"weight_decay must be >= 0, got {self.weight_decay}")


@dataclass(frozen=True)
class SweepParams(GraphParams):
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

    def validate(self) -> None:
        super().validate()
        from mlib.sweep import SweepError

        self.one_of("dataset", _thermal_datasets(), "data set")
        self.one_of("sampler", ("grid", "tpe"))
        self.one_of("pruner", ("none", "hyperband", "halving"))
        self.positive("epochs", "thermal_limit", "n_trials", "timeout_min")
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
        return self.storage or f"sqlite:///{(Path(self.out_dir) / 'sweep.db').resolve()}"


@dataclass(frozen=True)
class EmbedParams(GraphParams):
    """04_embed: t-SNE and PCA maps of the crystal vectors of 02_train's thermal-expansion model."""

    dataset: str = "aflow"
    model_path: str | None = None
    crystals: str = "test"
    perplexity: float = 30.0
    knn_k: int = 10
    n_labels: int = 3

    def validate(self) -> None:
        super().validate()
        self.one_of("dataset", _thermal_datasets(), "data set")
        self.one_of("crystals", ("test", "all"))
        self.positive("perplexity", "knn_k")
        if self.n_labels < 0:
            raise ParameterError(f"n_labels must be >= 0, got {self.n_labels}")

    def trained_model(self) -> str:
        """``model_path``, or 02_train's thermal model beside this run's output folder."""
        return self.model_path or str(Path(self.out_dir).parent / "02_train" / "thermal" / "model.pt")


@dataclass(frozen=True)
class MPStudyParams(NotebookParams):
    """Models x MP targets x seeds on a (labelled) subset of an MP data set."""

    dataset: str = "mp-cgcnn"
    limit: int | None = 2000
    models: list[str] = field(default_factory=lambda: ["gcn", "sage", "gine", "megnet", "m3gnet"])
    targets: list[str] = field(default_factory=lambda: ["formation_energy_per_atom", "band_gap"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    batch_size: int = 64
    lr: float = 0.001
    model_hyper: dict | None = None
    workers: int = 2

    def validate(self) -> None:
        super().validate()
        from mlib.data.mp import MP_TARGETS
        from mlib.datasets import MP_DATASETS
        from mlib.models.registry import MODELS, defaults

        self.one_of("dataset", MP_DATASETS, "MP data set")
        self.positive("limit", "batch_size", "lr", "workers")
        for name, options, what in ((self.models, MODELS, "model"), (self.targets, MP_TARGETS, "target")):
            if not name:
                raise ParameterError(f"{what}s must not be empty")
            bad = [v for v in name if v not in options]
            if bad:
                raise ParameterError(f"unknown {what}(s) {bad}; choose from {sorted(options)}")
        if not self.seeds or min(self.seeds) < 0 or len(set(self.seeds)) != len(self.seeds):
            raise ParameterError(f"seeds must be distinct integers >= 0, got {self.seeds}")
        for model, hyper in (self.model_hyper or {}).items():
            if model not in self.models:
                raise ParameterError(f"model_hyper names {model!r}, which is not in models {self.models}")
            unknown = sorted(set(hyper) - set(defaults(model)))
            if unknown:
                raise ParameterError(f"model_hyper[{model!r}]: unknown hyperparameter(s) {unknown}; "
                                     f"{model} takes {sorted(defaults(model))}")


@dataclass(frozen=True)
class ModelsParams(MPStudyParams):
    """04b_models: GCN, GraphSAGE, GINE, MEGNet and M3GNet trained centrally on MP targets, over seeds."""

    epochs: int = 100

    def validate(self) -> None:
        super().validate()
        self.positive("epochs")


@dataclass(frozen=True)
class FederatedParams(MPStudyParams):
    """05_federated: FedAvg and FedProx over clients that keep their crystals, beside a central baseline."""

    algorithms: list[str] = field(default_factory=lambda: ["fedavg", "fedprox"])
    clients: int = 5
    rounds: int = 20
    local_epochs: int = 2
    mu: float = 0.01
    partition: str = "iid"
    alpha: float = 0.5
    bn: str = "average"
    compare_partitions: list[str] = field(default_factory=lambda: ["iid", "chemistry", "dirichlet"])
    compare_model: str = "gcn"
    compare_target: str = "formation_energy_per_atom"
    central_dir: str | None = None

    def validate(self) -> None:
        super().validate()
        from mlib.data.mp import MP_TARGETS
        from mlib.federated.partition import PARTITIONS
        from mlib.models.registry import MODELS

        if not self.algorithms:
            raise ParameterError("algorithms must not be empty")
        for algorithm in self.algorithms:  # the engine's own checks: algorithm, rounds, epochs, mu, batch norm
            try:
                self.fed_config(algorithm)
            except ValueError as exc:
                raise ParameterError(str(exc)) from None
        self.positive("clients", "alpha")
        self.one_of("partition", PARTITIONS)
        bad = [p for p in self.compare_partitions if p not in PARTITIONS]
        if bad:
            raise ParameterError(f"unknown partition(s) {bad}; choose from {list(PARTITIONS)}")
        self.one_of("compare_model", MODELS, "model")
        self.one_of("compare_target", MP_TARGETS, "target")

    def fed_config(self, algorithm: str = "fedavg", seed: int | None = None):
        """The engine's configuration of one run."""
        from mlib.federated.simulation import FedConfig

        return FedConfig(algorithm, self.rounds, self.local_epochs, self.mu, self.lr, self.batch_size, self.bn,
                         self.seed if seed is None else seed)

    def central_folder(self) -> str:
        """Where the central baseline's runs live: ``central_dir``, or 04b_models beside this run (reused)."""
        return self.central_dir or str(Path(self.out_dir).parent / "04b_models")


@dataclass(frozen=True)
class TransferParams(GraphParams):
    """06_transfer: MP-pre-trained encoders (federated and central) fine-tuned on N thermal-expansion crystals."""

    dataset: str = "aflow"
    thermal_limit: int | None = None
    model: str = "gcn"
    model_hyper: dict | None = None
    sizes: list[int | None] = field(default_factory=lambda: [50, 100, 200, 500, 1000, None])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    pretrain_targets: list[str] = field(default_factory=lambda: ["formation_energy_per_atom", "band_gap"])
    algorithms: list[str] = field(default_factory=lambda: ["fedavg"])
    partition: str = "iid"
    pretrain_seed: int = 0
    central: bool = True
    modes: list[str] = field(default_factory=lambda: ["frozen", "train"])
    encoder_lr_scale: float = 0.1
    epochs: int = 200
    batch_size: int = 64
    lr: float = 0.01
    federated_dir: str | None = None
    central_dir: str | None = None

    def validate(self) -> None:
        super().validate()
        from mlib.data.mp import MP_TARGETS
        from mlib.federated.partition import PARTITIONS
        from mlib.federated.simulation import ALGORITHMS
        from mlib.models.registry import MODELS, defaults

        self.one_of("dataset", _thermal_datasets(), "data set")
        self.one_of("model", MODELS)
        self.one_of("partition", PARTITIONS)
        self.positive("thermal_limit", "encoder_lr_scale", "epochs", "batch_size", "lr")
        for values, options, what in ((self.pretrain_targets, MP_TARGETS, "pre-training target"),
                                      (self.algorithms, ALGORITHMS, "algorithm"), (self.modes, ("frozen", "train"), "mode")):
            bad = [v for v in values if v not in options]
            if bad:
                raise ParameterError(f"unknown {what}(s) {bad}; choose from {sorted(options)}")
        if not self.sizes or any(n is not None and n < 2 for n in self.sizes):
            raise ParameterError(f"sizes must be training-set sizes >= 2 (None: all), got {self.sizes}")
        if not self.seeds or min(self.seeds) < 0 or len(set(self.seeds)) != len(self.seeds):
            raise ParameterError(f"seeds must be distinct integers >= 0, got {self.seeds}")
        unknown = sorted(set(self.model_hyper or {}) - set(defaults(self.model)))
        if unknown:
            raise ParameterError(f"model_hyper: {self.model} has no hyperparameter(s) {unknown}")

    def encoders(self) -> dict[str, str]:
        """Source label -> pre-trained ``model.pt`` (05_federated's and 04b_models' runs beside this one)."""
        here = Path(self.out_dir).parent
        fed = Path(self.federated_dir or here / "05_federated")
        central = Path(self.central_dir or here / "04b_models")
        out = {}
        for target in self.pretrain_targets:
            for algorithm in self.algorithms:
                out[f"{algorithm} ({target})"] = str(fed / "runs" / self.partition / algorithm / self.model / target /
                                                     f"seed{self.pretrain_seed}" / "model.pt")
            if self.central:
                out[f"central ({target})"] = str(central / "runs" / self.model / target / f"seed{self.pretrain_seed}" / "model.pt")
        return out


PARAMS: dict[str, type[NotebookParams]] = {"01_data": DataParams, "02_train": TrainParams, "03_sweep": SweepParams,
                                           "04_embed": EmbedParams, "04b_models": ModelsParams,
                                           "05_federated": FederatedParams, "06_transfer": TransferParams}


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
