"""Parameters of each notebook and configurations of the engines, checked before any work starts.

Papermill only warns about parameters a notebook does not declare, so every notebook's second cell
calls :func:`check`, and the runner checks profiles and ``-p`` overrides against the same dataclasses:
a wrong name or value fails fast with a message naming it. Defaults come from :mod:`mlib.catalogue`;
this module imports nothing else from ``mlib`` (so checking parameters never loads torch or DGL).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlib import catalogue as C


class ParameterError(ValueError):
    """A notebook parameter or an engine setting is unknown or has a bad value."""


def param(default: Any, help: str) -> Any:
    """A dataclass field with its one-line description (shown by ``python -m mlib.reproduce --list``)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


class Checked:
    """Type and value checks shared by parameter and configuration dataclasses."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            _check_type(type(self).__name__, f.name, getattr(self, f.name), hints[f.name])
        self.validate()

    def validate(self) -> None:
        """Value checks beyond types; subclasses extend."""

    def key(self) -> dict[str, Any]:
        """The fields as a run's key. ``patience`` enters only when set and ``device`` only when not ``cpu``: they
        came after runs were stored, and a run without them keeps the key it was stored under."""
        return {
            k: v
            for k, v in dataclasses.asdict(self).items()
            if not (k == "patience" and v is None) and not (k == "device" and v == "cpu")
        }

    def positive(self, *names: str) -> None:
        """Each named value is > 0 (or None, where its type allows None)."""
        for name in names:
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ParameterError(f"{name} must be > 0, got {value}")

    def non_negative(self, *names: str) -> None:
        for name in names:
            if getattr(self, name) < 0:
                raise ParameterError(f"{name} must be >= 0, got {getattr(self, name)}")

    def one_of(self, name: str, options: Iterable, what: str | None = None) -> None:
        value, options = getattr(self, name), list(options)
        if value not in options:
            raise ParameterError(f"unknown {what or name} {value!r}; choose from {sorted(options)}")

    def all_of(self, name: str, options: Iterable, what: str, empty_ok: bool = False) -> None:
        """Every element of the list parameter ``name`` is one of ``options``."""
        values, options = getattr(self, name), list(options)
        if not values and not empty_ok:
            raise ParameterError(f"{name} must not be empty")
        bad = [v for v in values if v not in options]
        if bad:
            raise ParameterError(f"unknown {what}(s) {bad}; choose from {sorted(options)}")

    def atom_features_ok(self) -> None:
        """``atom_features`` is a known source or the path of an existing ``atom_init.json``-like file."""
        value = self.atom_features
        if value in C.ATOM_FEATURE_SOURCES:
            return
        path = Path(value).expanduser()
        if not value.endswith(".json") or not path.is_absolute() or not path.exists():
            raise ParameterError(
                f"unknown atom-feature source {value!r}: choose from {list(C.ATOM_FEATURE_SOURCES)} "
                "or give the absolute path of an existing atom_init.json-like file"
            )

    def seeds_ok(self, name: str = "seeds") -> None:
        values = getattr(self, name)
        if not values or min(values) < 0 or len(set(values)) != len(values):
            raise ParameterError(f"{name} must be distinct integers >= 0, got {values}")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _positive_number(text: str) -> bool:
    try:
        return 0 < float(text) < math.inf
    except ValueError:
        return False


# ---- engine configurations ------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig(Checked):
    """One training run: epochs, batch size, Adam's learning rate, weight decay and schedule, the epoch kept, seed."""

    epochs: int = C.TRAINING["epochs"]
    batch_size: int = C.TRAINING["batch_size"]
    lr: float = C.TRAINING["lr"]
    weight_decay: float = C.TRAINING["weight_decay"]
    seed: int = 0
    lr_schedule: str = C.TRAINING_CHOICES["lr_schedule"]
    best_by: str = C.TRAINING_CHOICES["best_by"]
    patience: int | None = None  # stop after this many epochs without a new best (None: train every epoch)
    device: str = "cpu"  # cpu, or cuda for matgl's models (the run's results are its own: keyed by device)

    def validate(self) -> None:
        self.positive("epochs", "batch_size", "lr", "patience")
        self.one_of("device", C.DEVICES, "device")
        self.non_negative("weight_decay", "seed")
        self.one_of("lr_schedule", C.LR_SCHEDULES, "learning-rate schedule")
        self.one_of("best_by", C.BEST_BY, "best-epoch criterion")


@dataclass(frozen=True)
class FineTune(Checked):
    """How a pre-trained encoder is trained further: ``frozen`` (weights and batch-norm statistics fixed,
    only the head learns) or ``train`` (everything learns, the encoder at ``encoder_lr_scale`` x lr)."""

    encoder: str = "frozen"
    encoder_lr_scale: float = 0.1

    def validate(self) -> None:
        self.one_of("encoder", C.FINE_TUNE_MODES, "fine-tuning mode")
        self.positive("encoder_lr_scale")


@dataclass(frozen=True)
class FedConfig(Checked):
    """One federated run: algorithm, rounds, local epochs, FedProx mu, local optimiser, batch norm, seed."""

    algorithm: str = "fedavg"
    rounds: int = C.FEDERATION["rounds"]
    local_epochs: int = C.FEDERATION["local_epochs"]
    mu: float = C.FEDERATION["mu"]
    lr: float = C.FEDERATION["lr"]
    batch_size: int = C.FEDERATION["batch_size"]
    bn: str = C.FEDERATION["bn"]
    seed: int = 0
    patience: int | None = None  # stop after this many rounds without a lower validation loss (None: every round)

    def validate(self) -> None:
        self.one_of("algorithm", C.ALGORITHMS)
        self.one_of("bn", C.BN_MODES, "batch-norm mode")
        self.positive("rounds", "local_epochs", "batch_size", "lr", "patience")
        self.non_negative("mu", "seed")

    @property
    def proximal_mu(self) -> float:
        """The mu a client uses: FedAvg is FedProx with mu = 0."""
        return self.mu if self.algorithm == "fedprox" else 0.0


@dataclass(frozen=True)
class SearchSpace(Checked):
    """Values tried per hyperparameter in a sweep (categorical, as in the paper's grid)."""

    conv_layers: list[int] = param(C.PAPER_GRID["conv_layers"], "CGCNN convolutions")
    batch_size: list[int] = param(C.PAPER_GRID["batch_size"], "batch sizes")
    hidden: list[int] = param(C.PAPER_GRID["hidden"], "atom vector widths")
    lr: list[float] = param(C.PAPER_GRID["lr"], "learning rates")

    def validate(self) -> None:
        for name, values in self.grid().items():
            if not values or any(v <= 0 for v in values):
                raise ParameterError(
                    f"search space {name!r} needs a non-empty list of positive numbers, got {values!r}"
                )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> SearchSpace:
        unknown = sorted(set(values or {}) - set(C.PAPER_GRID))
        if unknown:
            raise ParameterError(
                f"unknown hyperparameter(s) {unknown} in the search space; known: {sorted(C.PAPER_GRID)}"
            )
        return cls(**dict(values or {}))

    def grid(self) -> dict[str, list]:
        return dataclasses.asdict(self)

    def size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())


# ---- notebook parameters ---------------------------------------------------------------------------

RUNNER_OWNED = ("out_dir", "store_dir", "profile")  # set by the runner; ``-p`` may not override them


@dataclass(frozen=True)
class NotebookParams(Checked):
    """Parameters every notebook takes: where to write, where runs are stored, the profile, worker processes.
    A notebook declares only what it uses: ``seed`` where one seed decides its runs, the
    graph parameters where it builds graphs with them (:class:`GraphParams`); the others take lists of seeds,
    and graphs as each model's catalogue entry or model file says."""

    out_dir: str = param("../results/manual/nb", "folder of this notebook's tables and figures (set by the runner)")
    store_dir: str = param("../results/manual/store", "run store: trained models and finished runs (set by the runner)")
    profile: str = param("manual", "profile that produced the run (set by the runner)")
    workers: int = param(2, "worker processes (featurisation, independent runs, sweep workers)")

    def validate(self) -> None:
        self.positive("workers")


@dataclass(frozen=True)
class GraphParams(NotebookParams):
    """Parameters of notebooks that build CGCNN crystal graphs with them: neighbour radius (A), cap, tie order."""

    radius: float = param(C.RADIUS, "neighbour radius of the crystal graphs (A)")
    max_neighbors: int = param(C.MAX_NEIGHBORS, "neighbours kept per atom")
    tie_order: str = param(
        C.TIE_ORDERS[0], "neighbours at equal distance: pymatgen (its order, as the reference) or index"
    )

    def validate(self) -> None:
        super().validate()
        self.positive("radius", "max_neighbors")
        if self.radius <= C.MIN_DISTANCE:
            raise ParameterError(
                f"radius must be > {C.MIN_DISTANCE} A, got {self.radius:g}: atoms closer than that are refused, "
                "so no crystal would have an edge"
            )
        self.one_of("tie_order", C.TIE_ORDERS, "tie order")


@dataclass(frozen=True)
class DataParams(GraphParams):
    """01_data: data sets, their statistics and crystal graphs."""

    thermal_datasets: list[str] = param(list(C.THERMAL_DATASETS), "thermal-expansion data sets to build")
    aflow_source: str = param("auto", "AFLOW data: auto (mirror if set, else live), mirror or live")
    mp_limit: int | None = param(None, "first N mp-cgcnn crystals only (a labelled subset); null: all")
    strict: bool = param(False, "stop at the first unusable entry instead of counting it as a skip")

    def validate(self) -> None:
        super().validate()
        self.all_of("thermal_datasets", C.THERMAL_DATASETS, "thermal data set")
        self.one_of("aflow_source", C.AFLOW_SOURCES)
        self.positive("mp_limit")


ATOM_FEATURES_HELP = (
    "atom features: reference (atom_init.json), pymatgen, or the absolute path of an atom_init.json-like file"
)

# The training choices 02_train can compare (``compare: [name=value]``) and their options.
TRAINING_CHOICES: dict[str, tuple[str, ...]] = {
    "atom_features": C.ATOM_FEATURE_SOURCES,
    "lr_schedule": C.LR_SCHEDULES,
    "tie_order": C.TIE_ORDERS,
}


@dataclass(frozen=True)
class TrainParams(GraphParams):
    """02_train: CGCNN on thermal expansion (paper's best setting, reference choices) over splits, training
    choices compared, a seed ensemble, and MP formation energy."""

    seed: int = param(
        0, "split of the MP run, of the held-out check and of the ensemble mlib.predict reads (one of `seeds`)"
    )

    dataset: str = param("aflow", "thermal-expansion data set")
    thermal_limit: int | None = param(None, "first N thermal crystals only (a labelled subset); null: all")
    conv_layers: int = param(C.CGCNN_FRAME["n_conv"], "CGCNN convolutions")
    hidden: int = param(C.CGCNN_FRAME["hidden"], "atom vector width")
    head_hidden: int = param(C.CGCNN_FRAME["head_hidden"], "width of the MLP head")
    atom_features: str = param(C.CGCNN_DEFAULTS["atom_features"], ATOM_FEATURES_HELP)
    batch_size: int = param(C.TRAINING["batch_size"], "crystals per batch")
    lr: float = param(C.TRAINING["lr"], "Adam learning rate")
    weight_decay: float = param(C.TRAINING["weight_decay"], "Adam weight decay")
    epochs: int = param(C.TRAINING["epochs"], "training epochs (thermal expansion)")
    seeds: list[int] = param([0], "thermal runs: each seed its own 6:2:2 split, initial weights and batches")
    compare: list[str] = param(
        [], "training choices measured against the defaults, name=value (atom_features, lr_schedule, tie_order)"
    )
    compare_seeds: list[int] = param([0], "splits on which each choice of compare is measured (paired)")
    ensemble_seeds: list[int] = param(
        [0, 1], "seed ensemble: members' seeds (two or more), an ensemble on every split of `seeds`"
    )
    mp_dataset: str | None = param("mp-cgcnn", "MP data set of the implementation check; null: skip it")
    mp_target: str = param("formation_energy_per_atom", "MP target of the implementation check")
    mp_limit: int | None = param(None, "first N MP crystals only (a labelled subset); null: all")
    mp_epochs: int = param(30, "training epochs (MP)")
    lr_schedule: str = param(
        C.TRAINING_CHOICES["lr_schedule"], "step: lr / 10 from epoch 100 on (the reference's default), or constant"
    )
    best_by: str = param(
        C.TRAINING_CHOICES["best_by"], "epoch kept: lowest val_mae (target unit, the reference's) or val_mse"
    )
    resume: bool = param(True, "continue an interrupted run from its last checkpoint")
    architectures: list[str] = param(
        [], "other models trained on the thermal splits beside CGCNN (gcn, sage, gine, megnet, m3gnet); []: none"
    )
    architecture_splits: dict | None = param(
        None, "a costly architecture's own splits, a subset of seeds holding seed, e.g. {m3gnet: [0, 1, 2]}"
    )
    architecture_lrs: list[float] = param(
        [0.001, 0.003, 0.01], "learning rates each architecture tries on the split of seed; lowest validation MAE kept"
    )
    architecture_patience: int | None = param(
        30, "early stopping of the architectures: epochs without a lower validation MAE; null: train them all"
    )
    held_out: list[str] = param(
        ["W", "O"],
        "domain check: crystals with all these elements (tungstates) left out of training, tested on; []: none",
    )

    def architectures_ok(self) -> None:
        others = sorted(set(C.MODELS) - {"cgcnn"})
        for model in self.architectures:
            if model not in others:
                raise ParameterError(f"architectures: {model!r} is not one of {others} (CGCNN is the reference)")
        if len(set(self.architectures)) != len(self.architectures):
            raise ParameterError(f"architectures must be distinct, got {self.architectures}")
        for model, splits in (self.architecture_splits or {}).items():
            if model not in self.architectures:
                raise ParameterError(f"architecture_splits names {model!r}, which is not in architectures")
            if not isinstance(splits, list) or self.seed not in splits or not set(splits) <= set(self.seeds):
                raise ParameterError(
                    f"architecture_splits.{model}: {splits!r} must be a list of seeds ({self.seeds}) holding seed "
                    f"{self.seed} (its learning rate is chosen on that split)"
                )
        if not self.architecture_lrs or any(lr <= 0 for lr in self.architecture_lrs):
            raise ParameterError(f"architecture_lrs must be positive numbers, got {self.architecture_lrs}")
        self.positive("architecture_patience")

    def splits_of(self, model: str) -> list[int]:
        """The splits (by seed) an architecture is trained on."""
        return (self.architecture_splits or {}).get(model, self.seeds)

    def validate(self) -> None:
        super().validate()
        self.non_negative("seed")
        self.one_of("dataset", C.THERMAL_DATASETS, "data set")
        from pymatgen.core import Element

        for symbol in self.held_out:
            if not isinstance(symbol, str) or not Element.is_valid_symbol(symbol):
                raise ParameterError(f"held_out: {symbol!r} is not an element symbol")
        if self.mp_dataset is not None:
            self.one_of("mp_dataset", C.MP_DATASETS, "MP data set")
        self.one_of("mp_target", C.MP_TARGETS, "MP target")
        self.one_of("lr_schedule", C.LR_SCHEDULES, "learning-rate schedule")
        self.one_of("best_by", C.BEST_BY, "best-epoch criterion")
        self.atom_features_ok()
        for name in ("seeds", "compare_seeds", "ensemble_seeds"):
            self.seeds_ok(name)
        self.architectures_ok()
        if len(self.ensemble_seeds) < 2:
            raise ParameterError(
                f"ensemble_seeds {self.ensemble_seeds}: an ensemble needs two members or more (its spread is their "
                "standard deviation)"
            )
        if self.seed not in self.seeds:
            raise ParameterError(
                f"seed {self.seed} is not one of seeds {self.seeds}: the ensemble mlib.predict reads is the one on "
                "the split of seed, and ensembles are trained on the splits of seeds"
            )
        for change in self.compare:
            name, _, value = change.partition("=")
            if name not in TRAINING_CHOICES or value not in TRAINING_CHOICES[name]:
                raise ParameterError(
                    f"compare entry {change!r}: write name=value with name in {sorted(TRAINING_CHOICES)} "
                    f"and a value among its options {TRAINING_CHOICES.get(name, '')}"
                )
            if getattr(self, name) == value:
                raise ParameterError(f"compare entry {change!r} is the notebook's own setting: compare another value")
        self.positive(
            "conv_layers",
            "hidden",
            "head_hidden",
            "batch_size",
            "epochs",
            "mp_epochs",
            "thermal_limit",
            "mp_limit",
            "lr",
        )
        self.non_negative("weight_decay")


@dataclass(frozen=True)
class SweepParams(GraphParams):
    """03_sweep: the paper's CGCNN grid on Optuna, exhaustive or pruned, resumable in an RDB storage."""

    seed: int = param(0, "split and initial weights of every trial and final run; worker k samples with seed + k")

    dataset: str = param("aflow", "thermal-expansion data set")
    thermal_limit: int | None = param(None, "first N crystals only (a labelled subset); null: all")
    sampler: str = param("tpe", "grid (exhaustive) or tpe")
    pruner: str = param(
        "hyperband",
        "none, hyperband or halving (on the validation loss), or diverged (only trials no better than the mean)",
    )
    epochs: int = param(C.TRAINING["epochs"], "epochs of an unpruned trial")
    n_trials: int | None = param(60, "finished trials the study should hold; null: until the grid or timeout ends")
    timeout_min: float | None = param(
        None, "stop starting trials once the study has searched this many minutes (over all runs); null: no limit"
    )
    storage: str | None = param(None, "Optuna RDB URL; null: a SQLite file in the run store")
    study_name: str = param("cgcnn-thermal", "Optuna study name")
    search_space: dict | None = param(None, "narrow the paper's grid, e.g. {hidden: [32, 64]}; null: the whole grid")
    atom_features: str = param(C.CGCNN_DEFAULTS["atom_features"], ATOM_FEATURES_HELP)
    final_seeds: list[int] = param([0], "final model: the sweep's best and the paper's best on these splits")
    curve_sizes: list[int | None] = param(
        [], "learning curve: training crystals of the paper's configuration (null: the whole training split)"
    )

    def validate(self) -> None:
        super().validate()
        self.non_negative("seed")
        self.one_of("dataset", C.THERMAL_DATASETS, "data set")
        self.one_of("sampler", C.SAMPLERS)
        self.one_of("pruner", C.PRUNERS)
        self.atom_features_ok()
        self.seeds_ok("final_seeds")
        if any(size is not None and size < 2 for size in self.curve_sizes):
            raise ParameterError(f"curve_sizes must be integers >= 2 or null, got {self.curve_sizes}")
        self.positive("epochs", "thermal_limit", "n_trials", "timeout_min")
        self.space()

    def space(self) -> SearchSpace:
        """The search space: the paper's grid unless ``search_space`` narrows it."""
        return SearchSpace.from_dict(self.search_space)


@dataclass(frozen=True)
class CompositionParams(GraphParams):
    """03b_composition: CGCNN against a composition-only model on CrabNet's split and on the study's splits."""

    dataset: str = param("aflow", "thermal-expansion data set of the study's splits")
    source: str = param("auto", "AFLOW records and CrabNet's split: auto (mirror if set, else live), mirror or live")
    tolerance: float = param(0.01, "largest relative difference of CrabNet's target and the AFLOW label matched")
    limit: int | None = param(
        None,
        "about N matched CrabNet formulas (each part's first) and the first N thermal crystals (a labelled subset)",
    )
    atom_features: str = param(C.CGCNN_DEFAULTS["atom_features"], ATOM_FEATURES_HELP)
    batch_size: int = param(C.TRAINING["batch_size"], "crystals per batch (CGCNN)")
    lr: float = param(C.TRAINING["lr"], "Adam learning rate (CGCNN)")
    epochs: int = param(C.TRAINING["epochs"], "training epochs (CGCNN)")
    seeds: list[int] = param([0], "CGCNN and random-forest seeds on CrabNet's split")
    own_seeds: list[int] = param([0], "the study's splits (02_train's seeds), each CGCNN and random forest")
    trees: int = param(500, "trees of the random forest")
    best_architecture: bool = param(
        True, "also train 02_train's other architecture of lowest validation MAE on CrabNet's split (when 02 has one)"
    )

    def validate(self) -> None:
        super().validate()
        self.one_of("dataset", C.THERMAL_DATASETS, "data set")
        self.one_of("source", C.AFLOW_SOURCES)
        self.atom_features_ok()
        self.seeds_ok()
        self.seeds_ok("own_seeds")
        self.positive("tolerance", "limit", "batch_size", "lr", "epochs", "trees")


@dataclass(frozen=True)
class EmbedParams(NotebookParams):
    """04_embed: t-SNE and PCA maps of the crystal vectors of 02_train's thermal-expansion model."""

    seed: int = param(0, "seed of the t-SNE map and of the kNN folds that score the maps")

    dataset: str = param("aflow", "thermal-expansion data set (the one 02_train used)")
    model_path: str | None = param(None, "a saved model file; null: 02_train's thermal model in the run store")
    crystals: str = param("test", "test (the model's test split) or all")
    perplexity: float = param(30.0, "t-SNE perplexity")
    knn_k: int = param(10, "neighbours of the kNN regressor that scores the maps")
    n_labels: int = param(3, "lowest and highest predictions labelled on the maps")

    def validate(self) -> None:
        super().validate()
        self.non_negative("seed")
        self.one_of("dataset", C.THERMAL_DATASETS, "data set")
        self.one_of("crystals", ("test", "all"))
        self.positive("perplexity", "knn_k")
        self.non_negative("n_labels")


@dataclass(frozen=True)
class MPStudyParams(NotebookParams):
    """Models x MP targets x seeds on a (labelled) subset of an MP data set."""

    dataset: str = param("mp-cgcnn", "MP data set")
    limit: int | None = param(2000, "first N crystals only (a labelled subset); null: all")
    models: list[str] = param(list(C.MODELS), "models to train (CGCNN and the federated study's five)")
    targets: list[str] = param(list(C.MP_TARGETS), "MP targets")
    seeds: list[int] = param([0, 1, 2], "seeds (each its own split and initial weights)")
    batch_size: int = param(C.FEDERATION["batch_size"], "crystals per batch")
    lr: float = param(C.FEDERATION["lr"], "Adam learning rate")
    model_hyper: dict | None = param(None, "per-model hyperparameter overrides, e.g. {gcn: {hidden: 32}}")
    model_limits: dict | None = param(
        None, "per-model first-N crystals (a labelled subset), e.g. {megnet: 5000, m3gnet: 5000}; null: limit for all"
    )
    patience: int | None = param(None, "early stopping: epochs without a lower validation MAE; null: train them all")
    model_seeds: dict | None = param(
        None, "per-model seeds, some of `seeds` (fewer for costly models), e.g. {m3gnet: [0, 1]}; null: seeds for all"
    )

    def seeds_for(self, model: str) -> list[int]:
        """The seeds ``model`` runs with."""
        return list((self.model_seeds or {}).get(model, self.seeds))

    def seeds_label(self) -> str:
        """How captions name the seeds: ``seeds [0, 1, 2]`` and the models that run fewer."""
        fewer = [f"{C.MODELS[m].display} {self.seeds_for(m)}" for m in self.models if self.seeds_for(m) != self.seeds]
        return f"seeds {self.seeds}" + (f" ({', '.join(fewer)})" if fewer else "")

    def validate(self) -> None:
        super().validate()
        self.one_of("dataset", C.MP_DATASETS, "MP data set")
        self.positive("limit", "batch_size", "lr", "patience")
        self.all_of("models", C.MODELS, "model")
        self.all_of("targets", C.MP_TARGETS, "target")
        self.seeds_ok()
        per_model_hyper(self.models, self.model_hyper)
        for model, n in (self.model_limits or {}).items():
            if model not in C.MODELS or not isinstance(n, int) or isinstance(n, bool) or n < 2:
                raise ParameterError(
                    f"model_limits: {model!r}: {n!r}; give models of {sorted(C.MODELS)} and integers >= 2"
                )
        for model, seeds in (self.model_seeds or {}).items():
            if model not in C.MODELS or not isinstance(seeds, list) or not seeds or not set(seeds) <= set(self.seeds):
                raise ParameterError(
                    f"model_seeds: {model!r}: {seeds!r}; give models of {sorted(C.MODELS)} and non-empty lists "
                    f"of the seeds {self.seeds}"
                )


@dataclass(frozen=True)
class ModelsParams(MPStudyParams):
    """04b_models: CGCNN, GCN, GraphSAGE, GINE, MEGNet and M3GNet trained centrally on MP targets, over seeds."""

    epochs: int = param(100, "training epochs")
    device: str = param(
        "cpu", "where runs train: cpu, or cuda for MEGNet and M3GNet (a GPU torch sees; DGL models stay on cpu)"
    )
    beside_matgl1: bool = param(
        True,
        "MEGNet and M3GNet of the installed matgl also on each stored matgl 1.0.0 run's crystals, split and budget",
    )
    all_crystals: dict | None = param(
        None,
        "headline runs on every crystal beyond model_limits, {model: [targets]}, the model's first seed, on CGCNN's "
        "split of that seed; null: none",
    )

    def validate(self) -> None:
        super().validate()
        self.positive("epochs")
        self.one_of("device", C.DEVICES, "device")
        for model, targets in (self.all_crystals or {}).items():
            if model not in self.models or not isinstance(targets, list) or not set(targets) <= set(self.targets):
                raise ParameterError(
                    f"all_crystals: {model}: {targets!r} needs a model of models ({self.models}) and a list of its "
                    f"targets ({self.targets})"
                )
            if "cgcnn" not in self.models:
                raise ParameterError("all_crystals: the runs take CGCNN's split, so models must hold cgcnn")
        on_dgl = [m for m in self.models if C.MODELS[m].graph_kind != "matgl"]
        if self.device == "cuda" and on_dgl:
            raise ParameterError(
                f"device cuda: {on_dgl} run on DGL 1.1.3, which has no CUDA build for torch 2.13; train them with "
                "device cpu, or list only megnet and m3gnet in models"
            )


@dataclass(frozen=True)
class FederatedParams(MPStudyParams):
    """05_federated: FedAvg and FedProx over clients that keep their crystals, beside a central baseline."""

    algorithms: list[str] = param(list(C.ALGORITHMS), "federated algorithms")
    clients: int = param(5, "clients (sites)")
    rounds: int = param(C.FEDERATION["rounds"], "federated rounds")
    local_epochs: int = param(C.FEDERATION["local_epochs"], "epochs each client trains per round")
    mu: float = param(C.FEDERATION["mu"], "FedProx proximal weight")
    patience: int | None = param(
        None,
        "early stopping: rounds without a lower validation MSE (the central baseline: patience x local_epochs "
        "epochs, the same amount of training); null: every round",
    )
    partition: str = param("iid", "how the training crystals are dealt to clients (Table 1)")
    alpha: float = param(0.5, "Dirichlet concentration of the dirichlet partition")
    bn: str = param(C.FEDERATION["bn"], "batch norm: average (like any weight) or local (FedBN)")
    compare_partitions: list[str] = param(list(C.PARTITIONS), "partitions compared for one model and target")
    compare_model: str = param("gcn", "model of the partition comparison")
    compare_target: str = param("formation_energy_per_atom", "target of the partition comparison")
    fedprox_partitions: list[str] = param(
        ["iid", "chemistry", "dirichlet:0.1", "dirichlet:0.5"], "FedProx grid: partitions (dirichlet:alpha)"
    )
    fedprox_mus: list[float] = param([], "FedProx grid: mu values against FedAvg (empty: no grid)")
    fedprox_local_epochs: list[int] = param([1, 5], "FedProx grid: local epochs per round")
    fedprox_seeds: list[int] = param([0, 1, 2], "FedProx grid: seeds (three or more for a verdict)")
    fedprox_limit: int | None = param(None, "FedProx grid: its first N crystals (a labelled subset); null: all")
    model_algorithms: dict | None = param(
        None, "per-model algorithms, some of `algorithms`, e.g. {cgcnn: [fedavg]}; null: algorithms for all"
    )

    def algorithms_for(self, model: str) -> list[str]:
        """The federated algorithms ``model`` runs with."""
        return list((self.model_algorithms or {}).get(model, self.algorithms))

    def algorithms_label(self) -> str:
        """How captions name the models that run fewer algorithms: `` (CGCNN FedAvg only)``, or nothing."""
        fewer = [
            f"{C.MODELS[m].display} {' and '.join(C.ALGORITHMS[a] for a in self.algorithms_for(m))} only"
            for m in self.models
            if self.algorithms_for(m) != list(self.algorithms)
        ]
        return f" ({', '.join(fewer)})" if fewer else ""

    def validate(self) -> None:
        super().validate()
        self.all_of("algorithms", C.ALGORITHMS, "algorithm")
        for algorithm in self.algorithms:
            self.fed_config(algorithm)
        self.positive("clients", "alpha")
        self.one_of("partition", C.PARTITIONS)
        self.all_of("compare_partitions", C.PARTITIONS, "partition")
        self.one_of("compare_model", C.MODELS, "model")
        self.one_of("compare_target", C.MP_TARGETS, "target")
        for spec in self.fedprox_partitions:
            scheme, _, alpha = spec.partition(":")
            if scheme not in C.PARTITIONS or (alpha and (scheme != "dirichlet" or not _positive_number(alpha))):
                raise ParameterError(
                    f"fedprox_partitions entry {spec!r}: write one of {sorted(C.PARTITIONS)}, or dirichlet:alpha (alpha > 0)"
                )
        if any(not (0 < mu < math.inf) for mu in self.fedprox_mus):
            raise ParameterError(
                f"fedprox_mus must be finite and > 0 (FedAvg is the mu = 0 baseline), got {self.fedprox_mus}"
            )
        self.seeds_ok("fedprox_seeds")
        self.positive("fedprox_limit")
        for model, algorithms in (self.model_algorithms or {}).items():
            if (
                model not in C.MODELS
                or not isinstance(algorithms, list)
                or not algorithms
                or not set(algorithms) <= set(self.algorithms)
            ):
                raise ParameterError(
                    f"model_algorithms: {model!r}: {algorithms!r}; give models of {sorted(C.MODELS)} and lists of "
                    f"the algorithms {self.algorithms}"
                )
        if not self.fedprox_local_epochs or min(self.fedprox_local_epochs) < 1:
            raise ParameterError(f"fedprox_local_epochs must be integers >= 1, got {self.fedprox_local_epochs}")

    def fed_config(self, algorithm: str = "fedavg", seed: int = 0) -> FedConfig:
        """The engine's configuration of one run (of ``seed``: each run of the notebook sets its own)."""
        return FedConfig(
            algorithm,
            self.rounds,
            self.local_epochs,
            self.mu,
            self.lr,
            self.batch_size,
            self.bn,
            seed,
            self.patience,
        )


@dataclass(frozen=True)
class TransferParams(NotebookParams):
    """06_transfer: MP-pre-trained encoders (federated and central) fine-tuned on N thermal-expansion crystals."""

    dataset: str = param("aflow", "thermal-expansion data set")
    thermal_limit: int | None = param(None, "first N thermal crystals only (a labelled subset); null: all")
    models: list[str] = param(["cgcnn", "gcn"], "models whose pre-trained encoders are fine-tuned")
    model_hyper: dict | None = param(
        None, "per-model hyperparameter overrides, as in their pre-training, e.g. {gcn: {hidden: 32}}"
    )
    sizes: list[int | None] = param([50, 100, 200, 500, 1000, None], "training-set sizes N (null: all)")
    seeds: list[int] = param([0, 1, 2, 3, 4], "seeds: which N crystals are drawn, initial head weights")
    pretrain_targets: list[str] = param(list(C.MP_TARGETS), "MP targets of the pre-trained encoders")
    algorithms: list[str] = param(["fedavg"], "federated encoders (05_federated) to fine-tune")
    partition: str = param("iid", "partition of the federated encoders")
    pretrain_seed: int = param(0, "seed of the pre-training runs used")
    central: bool = param(True, "also fine-tune the central encoder (04b_models)")
    on_02_splits: str | None = param(
        "formation_energy_per_atom",
        "MP target of the central encoder that CGCNN and 02_train's best other architecture fine-tune on all of "
        "02's splits (mode train, its scratch run's settings); null: skip",
    )
    modes: list[str] = param(list(C.FINE_TUNE_MODES), "frozen (only the head learns) and/or train (all weights)")
    encoder_lr_scale: float = param(0.1, "encoder learning rate relative to lr in mode train")
    epochs: int = param(C.TRAINING["epochs"], "fine-tuning epochs")
    batch_size: int = param(C.TRAINING["batch_size"], "crystals per batch")
    lr: float = param(C.TRAINING["lr"], "Adam learning rate of the head")
    patience: int | None = param(None, "early stopping: epochs without a lower validation MAE; null: train them all")

    def validate(self) -> None:
        super().validate()
        self.one_of("dataset", C.THERMAL_DATASETS, "data set")
        self.all_of("models", C.MODELS, "model")
        self.one_of("partition", C.PARTITIONS)
        self.positive("thermal_limit", "encoder_lr_scale", "epochs", "batch_size", "lr", "patience")
        self.all_of("pretrain_targets", C.MP_TARGETS, "pre-training target")
        if self.on_02_splits is not None:
            self.one_of("on_02_splits", C.MP_TARGETS, "pre-training target")
        self.all_of("algorithms", C.ALGORITHMS, "algorithm", empty_ok=True)
        self.all_of("modes", C.FINE_TUNE_MODES, "mode")
        if not self.sizes or any(n is not None and n < 2 for n in self.sizes):
            raise ParameterError(f"sizes must be training-set sizes >= 2 (None: all), got {self.sizes}")
        self.seeds_ok()
        per_model_hyper(self.models, self.model_hyper)


@dataclass(frozen=True)
class ExperimentParams(NotebookParams):
    """07_experiment: encoders pre-trained on MP formation energy without the experimental crystals (centrally
    and federatedly), fine-tuned on N measured formation enthalpies, against baselines on the same test crystals."""

    limit: int | None = param(None, "first N experimental crystals only (a labelled subset); null: all")
    include_disputed: bool = param(True, "keep the compounds whose NBS value is disputed (always also shown without)")
    models: list[str] = param(["cgcnn", "gcn"], "networks pre-trained, fine-tuned and trained from scratch")
    model_hyper: dict | None = param(None, "per-model hyperparameter overrides, e.g. {gcn: {hidden: 32}}")
    mp_limit: int | None = param(None, "pre-training: first N mp-cgcnn crystals only (a labelled subset); null: all")
    pretrain_lr: float = param(C.FEDERATION["lr"], "Adam learning rate of pre-training (central and clients)")
    pretrain_patience: int | None = param(5, "pre-training early stopping in rounds (central: x local_epochs epochs)")
    algorithms: list[str] = param(["fedavg"], "federated pre-training algorithms, beside central")
    clients: int = param(5, "federated clients (IID shards of the pre-training crystals)")
    rounds: int = param(C.FEDERATION["rounds"], "pre-training rounds (central: rounds x local_epochs epochs)")
    local_epochs: int = param(C.FEDERATION["local_epochs"], "local epochs per round")
    pretrain_seed: int = param(0, "seed of the pre-training runs (split, shards, weights)")
    sizes: list[int | None] = param([50, 100, 200, 500, None], "fine-tuning training-set sizes N (null: all)")
    splits: list[int] = param([0, 1, 2, 3, 4], "80:20 splits of the experimental set (test fixed across N)")
    seeds: list[int] = param([0, 1, 2, 3, 4], "seeds: which N crystals are drawn, initial head weights")
    modes: list[str] = param(list(C.FINE_TUNE_MODES), "frozen (only the head learns) and/or train (all weights)")
    residual: bool = param(True, "also fine-tune (mode train) on experiment minus DFT, added back to the DFT value")
    encoder_lr_scale: float = param(0.1, "encoder learning rate relative to lr in mode train")
    epochs: int = param(C.TRAINING["epochs"], "fine-tuning epochs")
    batch_size: int = param(C.TRAINING["batch_size"], "crystals per batch")
    lr: float = param(C.TRAINING["lr"], "Adam learning rate of the head")
    patience: int | None = param(None, "early stopping: epochs without a lower validation MAE; null: train them all")
    trees: int = param(500, "trees of the composition baseline's random forest")

    def validate(self) -> None:
        super().validate()
        self.positive("limit", "mp_limit", "pretrain_lr", "pretrain_patience", "clients")
        self.positive("rounds", "local_epochs", "encoder_lr_scale", "epochs", "batch_size", "lr", "patience", "trees")
        self.all_of("models", C.MODELS, "model")
        self.all_of("algorithms", C.ALGORITHMS, "algorithm", empty_ok=True)
        self.all_of("modes", C.FINE_TUNE_MODES, "mode")
        if self.clients < 2:
            raise ParameterError(f"clients must be >= 2 (one client is central training), got {self.clients}")
        if not self.sizes or any(n is not None and n < 2 for n in self.sizes):
            raise ParameterError(f"sizes must be training-set sizes >= 2 (None: all), got {self.sizes}")
        self.seeds_ok()
        self.seeds_ok("splits")
        if self.pretrain_seed < 0:
            raise ParameterError(f"pretrain_seed must be >= 0, got {self.pretrain_seed}")
        per_model_hyper(self.models, self.model_hyper)

    def pretrain_config(self, algorithm: str) -> FedConfig:
        """The federated pre-training's configuration (``algorithm`` of :data:`ALGORITHMS`)."""
        return FedConfig(
            algorithm,
            self.rounds,
            self.local_epochs,
            C.FEDERATION["mu"],
            self.pretrain_lr,
            self.batch_size,
            C.FEDERATION["bn"],
            self.pretrain_seed,
            self.pretrain_patience,
        )

    def fine_tune_config(self) -> TrainConfig:
        """A fine-tuning (or scratch) run on the experimental crystals; each run sets its seed."""
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, patience=self.patience)

    def central_config(self) -> TrainConfig:
        """Central pre-training with the federation's budget: rounds x local_epochs epochs, early stopping after
        ``pretrain_patience`` rounds' worth of epochs."""
        patience = self.pretrain_patience * self.local_epochs if self.pretrain_patience else None
        return TrainConfig(
            epochs=self.rounds * self.local_epochs,
            batch_size=self.batch_size,
            lr=self.pretrain_lr,
            patience=patience,
            seed=self.pretrain_seed,
        )


def per_model_hyper(models: list[str], model_hyper: Mapping[str, Any] | None) -> None:
    """``model_hyper`` names models of ``models`` only, each with hyperparameters it takes."""
    for model, hyper in (model_hyper or {}).items():
        if model not in models:
            raise ParameterError(f"model_hyper names {model!r}, which is not in models {models}")
        known_hyper(model, hyper)


def known_hyper(model: str, hyper: Mapping[str, Any]) -> None:
    """Every name in ``hyper`` is a hyperparameter of ``model``."""
    unknown = sorted(set(hyper) - set(C.MODEL_DEFAULTS[model]))
    if unknown:
        raise ParameterError(
            f"model_hyper[{model!r}]: unknown hyperparameter(s) {unknown}; "
            f"{model} takes {sorted(C.MODEL_DEFAULTS[model])}"
        )


PARAMS: dict[str, type[NotebookParams]] = {
    "01_data": DataParams,
    "02_train": TrainParams,
    "03_sweep": SweepParams,
    "03b_composition": CompositionParams,
    "04_embed": EmbedParams,
    "04b_models": ModelsParams,
    "05_federated": FederatedParams,
    "06_transfer": TransferParams,
    "07_experiment": ExperimentParams,
}


def params_class(notebook: str) -> type[NotebookParams]:
    """The parameter dataclass of a notebook, by its stem (``01_data``)."""
    try:
        return PARAMS[notebook]
    except KeyError:
        raise ParameterError(f"no parameter schema for notebook {notebook!r}; known: {sorted(PARAMS)}") from None


def names(notebook: str) -> set[str]:
    """The parameter names a notebook declares."""
    return {f.name for f in dataclasses.fields(params_class(notebook))}


def describe(notebook: str) -> list[tuple[str, Any, str]]:
    """(name, default, description) of each parameter of a notebook, in declaration order."""
    out = []
    for f in dataclasses.fields(params_class(notebook)):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        out.append((f.name, default, f.metadata.get("help", "")))
    return out


def build(notebook: str, values: Mapping[str, Any]) -> NotebookParams:
    """Check ``values`` against the notebook's schema: unknown names, types and ranges."""
    cls = params_class(notebook)
    unknown = sorted(set(values) - names(notebook))
    if unknown:
        raise ParameterError(f"{notebook}: unknown parameter(s) {unknown}; known: {sorted(names(notebook))}")
    return cls(**values)


def parameters_cell(notebook: str) -> str:
    """The source of a notebook's papermill parameters cell, written from its dataclass: every parameter once, with
    its default and help (a test holds each committed notebook to it; ``python -m mlib.reproduce --sync-cells``
    rewrites the cells)."""
    lines = [
        "# Parameters (papermill): the runner sets out_dir, store_dir and profile; profiles in mlib/profiles.yaml."
    ]
    for name, default, help in describe(notebook):
        value = f"../results/manual/{notebook}" if name == "out_dir" else default
        lines.append(f"{name} = {value!r}  # {help}")
    return "\n".join(lines)


def check(notebook: str, namespace: Mapping[str, Any]) -> NotebookParams:
    """Pick the notebook's parameters out of a namespace (a notebook's ``globals()``) and check them."""
    return build(notebook, {k: namespace[k] for k in names(notebook) if k in namespace})


def _check_type(owner: str, name: str, value: Any, hint: Any) -> None:
    if not _matches(value, hint):
        raise ParameterError(f"{owner}.{name}: expected {_describe(hint)}, got {value!r} ({type(value).__name__})")
    values = value if isinstance(value, list) else [value]
    if any(isinstance(v, float) and not math.isfinite(v) for v in values):
        raise ParameterError(f"{owner}.{name}: must be finite, got {value!r}")


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
    if typing.get_origin(hint) is not None:
        return str(hint).replace("typing.", "")
    return getattr(hint, "__name__", None) or str(hint)
