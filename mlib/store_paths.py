"""Where the run store keeps every run: each notebook's run folders, built here and nowhere else.

A notebook's runs live under ``<store>/<notebook>/``; a run folder ends in ``seed<k>`` (the seed of its weights
and batches). Another notebook that reads a run (a pre-trained encoder, 02's model for 04's maps) asks here
for its folder, so a layout changed here changes for every reader.
"""

from __future__ import annotations

from pathlib import Path

TRAIN, SWEEP, COMPOSITION, MODELS, FEDERATED, TRANSFER, EXPERIMENT = (
    "02_train",
    "03_sweep",
    "03b_composition",
    "04b_models",
    "05_federated",
    "06_transfer",
    "07_experiment",
)
# The MEGNet and M3GNet runs of matgl 1.0.0 (DGL; M3GNet's three-body messages on the wrong bonds), kept beside
# the maintained matgl's runs for a side-by-side comparison; they cannot be rerun with the study's lock.
MATGL_1 = "matgl-1.0.0"
REFERENCE = "reference"  # 02's setting of the study's defaults (the reference implementation's choices)
ENSEMBLE_FILE = "ensemble.json"
ARCHITECTURES = "architectures"  # 02_train: the other models on the thermal splits
ON_02_SPLITS = "on-02-splits"  # 06_transfer: encoders fine-tuned on 02_train's splits


def _seed(seed: int) -> str:
    return f"seed{seed}"


def thermal_run(store: str | Path, dataset: str, setting: str, seed: int, split: int | None = None) -> Path:
    """02_train: a thermal-expansion run of a setting on the split of its own seed, or (``split``) a member of the
    seed ensemble on another seed's split."""
    member = ("ensemble", f"split{split}") if split is not None else ()
    return Path(store, TRAIN, "thermal", dataset, setting, *member, _seed(seed))


def thermal_model_file(store: str | Path, dataset: str, seed: int = 0) -> Path:
    """02_train's thermal-expansion model of a data set and split seed at the reference setting (04_embed reads it)."""
    return thermal_run(store, dataset, REFERENCE, seed) / "model.pt"


def ensemble_file(store: str | Path, dataset: str, split: int = 0) -> Path:
    """The manifest of 02_train's thermal-expansion seed ensemble on the split of seed ``split`` (``mlib.predict``
    reads it)."""
    return Path(store, TRAIN, "thermal", dataset, REFERENCE, "ensemble", f"split{split}", ENSEMBLE_FILE)


def thermal_architecture_run(store: str | Path, dataset: str, model: str, lr: float, seed: int) -> Path:
    """02_train: another architecture than CGCNN on the split of ``seed``, trained at learning rate ``lr``."""
    return Path(store, TRAIN, "thermal", dataset, ARCHITECTURES, model, f"lr{lr}", _seed(seed))


def mp_run(store: str | Path, dataset: str, target: str, seed: int) -> Path:
    """02_train: CGCNN on a Materials Project target."""
    return Path(store, TRAIN, "mp", dataset, target, _seed(seed))


def sweep_database(store: str | Path, study: str) -> Path:
    """03_sweep: the SQLite file of an Optuna study (when no shared storage is named)."""
    return Path(store, SWEEP, f"{study}.db")


def sweep_final_run(store: str | Path, label: str, seed: int) -> Path:
    """03_sweep: a final run of a configuration (``label``: its hyperparameters, e.g. ``conv3_batch64_...``)."""
    return Path(store, SWEEP, "final", label, _seed(seed))


def sweep_curve_run(store: str | Path, n_train: int) -> Path:
    """03_sweep: one point of the learning curve in the number of training crystals."""
    return Path(store, SWEEP, "curve", f"n{n_train}")


def composition_run(store: str | Path, split: str, seed: int, model: str | None = None) -> Path:
    """03b_composition: CGCNN (or ``model``, 02_train's best other architecture) on ``split`` (``crabnet``: CrabNet's
    split mapped onto AFLOW; ``own``: the study's)."""
    return Path(store, COMPOSITION, split, *((model,) if model else ()), _seed(seed))


def model_run(store: str | Path, model: str, target: str, seed: int, group: str = "") -> Path:
    """04b_models: one central run of a model on a Materials Project target (``group``: e.g. :data:`MATGL_1`)."""
    return Path(store, MODELS, group, model, target, _seed(seed))


def federated_root(store: str | Path) -> Path:
    """05_federated's part of the store (every federated run lies somewhere below it)."""
    return Path(store, FEDERATED)


def federated_run(
    store: str | Path, scheme: str, algorithm: str, model: str, target: str, seed: int, group: str = ""
) -> Path:
    """05_federated: one federation (``group``: a sub-study's folder, e.g. the FedProx grid's)."""
    return Path(store, FEDERATED, group, scheme, algorithm, model, target, _seed(seed))


def central_run(store: str | Path, model: str, target: str, seed: int, group: str = "") -> Path:
    """05_federated: a central baseline trained here (when 04b_models' run has another key)."""
    return Path(store, FEDERATED, group, "central", model, target, _seed(seed))


def transfer_run(store: str | Path, model: str, source: str, mode: str, n_train: int | None, seed: int) -> Path:
    """06_transfer: one point of a learning curve (``source``: scratch or a pre-trained encoder; ``mode``: how)."""
    return Path(store, TRANSFER, model, source, mode, f"n{n_train or 'all'}", _seed(seed))


def transfer_split_run(store: str | Path, model: str, source: str, seed: int) -> Path:
    """06_transfer: a pre-trained encoder fine-tuned on all of 02_train's split of ``seed`` (beside its run from
    scratch there)."""
    return Path(store, TRANSFER, ON_02_SPLITS, model, source, _seed(seed))


def experiment_pretrain_run(store: str | Path, algorithm: str, model: str, seed: int) -> Path:
    """07_experiment: an encoder pre-trained on MP formation energy without the experimental crystals
    (``algorithm``: central or a federated algorithm)."""
    return Path(store, EXPERIMENT, "pretrain", algorithm, model, _seed(seed))


def experiment_run(
    store: str | Path, model: str, source: str, mode: str, target: str, n_train: int | None, split: int, seed: int
) -> Path:
    """07_experiment: one fine-tuning (or scratch) run on N experimental crystals of one 80:20 split."""
    return Path(store, EXPERIMENT, model, source, mode, target, f"n{n_train or 'all'}", f"split{split}", _seed(seed))
