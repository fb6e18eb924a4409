"""Training and evaluation of graph regressors: seeded splits, standardised targets, checkpoints.

* The split (6:2:2 by default) is drawn from a seed and saved with the crystal ids.
* The target is standardised with the mean and std of the training split only.
* Which crystals share a training batch is drawn anew every epoch (seeded by seed and epoch), as in
  minibatch SGD and the reference implementation; validation batches are fixed.
* The learning rate is constant or divided by 10 from epoch 100 on (``lr_schedule="step"``, the
  reference's default); the kept epoch has the lowest validation MSE (standardised) or MAE (target unit).
* Early stopping (``patience``, off by default) ends training once that many epochs passed without a new
  best; a resumed run that had stopped early stays stopped.
* The test metrics at the best epoch of every criterion are recorded (``by_criterion``): the criterion
  does not change training, so one run measures them all; ``best-<criterion>.pt`` keeps the others' weights.
* ``last.pt`` is written after every finite epoch (resume continues from it after an interruption),
  ``best.pt`` at each new best validation loss, both atomically and with the run's key; a checkpoint
  made with another key (data, parameters, code) is refused, never resumed. A NaN loss stops training
  with a clear error and leaves both checkpoints as they were.
* :func:`fit_regressor` is one run of the run store (:mod:`mlib.store`): a finished run with the same
  key is read back instead of retrained.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dgl
import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from mlib import model_file, store
from mlib.catalogue import BEST_BY, LR_STEP_EPOCH
from mlib.graphs.featurize import Graph, GraphSet, collate
from mlib.models.registry import MODEL_CODE_VERSION, build_model, foreign_library
from mlib.parallel import run_jobs
from mlib.params import FineTune, TrainConfig
from mlib.progress import progress
from mlib.scaling import Standardizer
from mlib.store import RunMismatch


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read."""


def seed_everything(seed: int) -> None:
    """Seed Python, numpy, torch and DGL; deterministic kernels on CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    dgl.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # deterministic mode also fills every new tensor with NaN (a check for reads of uninitialised memory),
    # which costs about 5 % of a CGCNN epoch; no kernel here reads memory it did not write
    torch.utils.deterministic.fill_uninitialized_memory = False


def split_of_ids(graph_set: GraphSet, ids: Mapping[str, Iterable[str]]) -> dict[str, np.ndarray]:
    """Another run's split (crystal ids per part) as row numbers of ``graph_set``; ids it lacks are dropped."""
    row = {entry: i for i, entry in enumerate(graph_set.table["id"].astype(str))}
    return {
        part: np.array([row[i] for i in map(str, part_ids) if i in row], dtype=np.int64)
        for part, part_ids in ids.items()
    }


def split_indices(
    n: int, seed: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), min_per_split: int = 1
) -> dict[str, np.ndarray]:
    """A seeded random split of ``n`` crystals into train/val/test."""
    if not math.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    sizes = [int(round(f * n)) for f in fractions[:2]]
    sizes.append(n - sum(sizes))
    if min(sizes) < min_per_split:
        raise ValueError(
            f"{n} crystals are too few for a {fractions} split "
            f"(sizes {sizes}; each split needs at least {min_per_split})"
        )
    order = np.random.default_rng(seed).permutation(n)
    return {
        "train": order[: sizes[0]],
        "val": order[sizes[0] : sizes[0] + sizes[1]],
        "test": order[sizes[0] + sizes[1] :],
    }


def few_shot_split(
    n_total: int,
    n_train: int | None,
    seed: int,
    split_seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
) -> dict[str, np.ndarray]:
    """The fixed split of ``split_seed`` with ``n_train`` training crystals drawn by ``seed`` (None: all); the
    validation set shrinks with N (a third of N, at least 10), as a user with N labelled crystals would have."""
    full = split_indices(n_total, split_seed, fractions)
    if n_train is None or n_train >= len(full["train"]):
        return full
    rng = np.random.default_rng(seed)
    n_val = min(len(full["val"]), max(10, n_train // 3))
    return {
        "train": np.sort(rng.choice(full["train"], n_train, replace=False)),
        "val": np.sort(rng.choice(full["val"], n_val, replace=False)),
        "test": full["test"],
    }


def split_digest(split: dict[str, np.ndarray]) -> str:
    """Digest of a split's row numbers (part of a run's key)."""
    h = hashlib.sha256()
    for part in ("train", "val", "test"):
        h.update(part.encode() + np.asarray(split[part], dtype=np.int64).tobytes())
    return h.hexdigest()


def save_split(path: Path, ids: list[str], split: dict[str, np.ndarray], seed: int) -> None:
    store.write_text(path, json.dumps({"seed": seed, **{k: [ids[i] for i in v] for k, v in split.items()}}, indent=1))


def make_batches(
    graphs: list[Graph],
    y: torch.Tensor,
    rows: np.ndarray,
    batch_size: int,
    rng: np.random.Generator | None = None,
) -> list[tuple[Graph, torch.Tensor, np.ndarray]]:
    """Batched graphs with targets and row numbers; ``rng`` shuffles which crystals share a batch."""
    rows = rng.permutation(rows) if rng is not None else np.asarray(rows)
    return [
        (collate([graphs[i] for i in chunk]), y[chunk], chunk)
        for chunk in (rows[k : k + batch_size] for k in range(0, len(rows), batch_size))
    ]


def torch_device(name: str) -> torch.device:
    """The device a run trains on; ``cuda`` where torch sees no GPU is refused with a message saying why."""
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device cuda: torch {torch.__version__} sees no GPU (the study's lock installs the CPU wheel of torch; "
            "a CUDA build of the same version and a GPU are needed): train with device cpu"
        )
    return torch.device(name)


def prepare_graphs(model: nn.Module, graphs: list[Graph]) -> None:
    """Let a model attach what it computes once per crystal (M3GNet: its three-body graphs) before batching."""
    prepare = getattr(model, "prepare", None)
    if prepare is not None:
        prepare(graphs)


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Pearson R, MAE, RMSE, MSE and R2 (a diverged model's constant predictions: R is NaN, without a warning)."""
    err = pred - y
    ss_tot = float(((y - y.mean()) ** 2).sum())
    mse = float((err**2).mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (stats.ConstantInputWarning, stats.NearConstantInputWarning))
        r = float(stats.pearsonr(y, pred)[0]) if len(y) > 1 else float("nan")
    return {
        "pearson_r": r,
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt(mse)),
        "mse": mse,
        "r2": 1 - float((err**2).sum()) / ss_tot if ss_tot > 0 else float("nan"),
    }


@torch.no_grad()
def predict(
    model: nn.Module, batches, scaler: Standardizer, forward: Callable | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Predictions (original units) and row numbers over pre-built batches; ``forward(graph, rows)``, if given,
    replaces ``model(graph)`` (a frozen encoder's stored crystal vectors)."""
    model.eval()
    preds, rows = [], []
    for graph, _, chunk in batches:
        preds.append(scaler.decode(forward(graph, chunk) if forward else model(graph)).cpu().numpy())
        rows.append(chunk)
    return np.concatenate(preds), np.concatenate(rows)


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's contents, or a :class:`CheckpointError` naming the file and what to do."""
    try:
        return store.load_torch(path)
    except store.UntrustedFile as exc:
        raise CheckpointError(str(exc)) from None
    except Exception as exc:  # truncated, zero-length or foreign files
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}); it is damaged: delete it "
            "to start this run over (finished runs elsewhere are not affected)"
        ) from None


class Trainer:
    """Adam + MSE on the standardised target, with best/last checkpoints and resume.

    ``key`` identifies the run (parameters, data digest, code versions); it is written into every
    checkpoint, and :meth:`resume` refuses a checkpoint with another key.
    """

    store_vectors = True  # a frozen encoder's crystal vectors are computed once (see :attr:`head_only`)

    def __init__(
        self,
        model: nn.Module,
        graphs: list[Graph],
        y: torch.Tensor,
        split: dict[str, np.ndarray],
        config: TrainConfig,
        out_dir: Path,
        fine_tune: FineTune | None = None,
        key: dict | None = None,
    ) -> None:
        self.model, self.graphs, self.y, self.split, self.config = model, graphs, y, split, config
        self.device = torch_device(config.device)
        self.model.to(self.device)
        self.fine_tune = fine_tune
        self.key = store.canonical(key or {"config": config.key()})
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        prepare_graphs(model, graphs)
        self.scaler = Standardizer.fit(y[split["train"]])
        self.optimizer = torch.optim.Adam(self._param_groups(), lr=config.lr, weight_decay=config.weight_decay)
        milestones = [LR_STEP_EPOCH] if config.lr_schedule == "step" else []
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones, gamma=0.1)
        self.vectors: torch.Tensor | None = None  # crystal vectors of a frozen encoder, made once when first needed
        self.val_batches = self.batches(split["val"], config.batch_size)
        self.history: list[dict[str, float]] = []
        self.best_val = math.inf
        self.epoch = 0
        self.seconds = 0.0  # wall seconds of the epochs in ``timed_epochs`` (over all sittings of the run)
        self.timed_epochs = 0

    @property
    def head_only(self) -> bool:
        """A frozen encoder with a separable head: each crystal's vector is computed once, only the head trains.

        The same numbers as running the whole model (the frozen encoder is in eval mode, so a crystal's
        vector does not depend on its batch), at the cost of the head alone; ``store_vectors = False``
        runs the whole model on every batch instead (tests and benchmarks compare the two).
        """
        frozen = self.fine_tune is not None and self.fine_tune.encoder == "frozen"
        return self.store_vectors and frozen and hasattr(self.model, "regress")

    def batches(self, rows: np.ndarray, size: int, rng: np.random.Generator | None = None) -> list:
        """Batches of ``rows`` (shuffled by ``rng``); with :attr:`head_only` no graphs are batched."""
        if not self.head_only:
            return make_batches(self.graphs, self.y, rows, size, rng)
        rows = rng.permutation(rows) if rng is not None else np.asarray(rows)
        return [(None, self.y[chunk], chunk) for chunk in (rows[k : k + size] for k in range(0, len(rows), size))]

    @torch.no_grad()
    def _crystal_vectors(self) -> torch.Tensor:
        """The frozen encoder's vector of every crystal of the split, shape (crystals, features)."""
        if self.vectors is None:
            self._set_mode(False)
            rows = np.concatenate(list(self.split.values()))
            batches = make_batches(self.graphs, self.y, rows, 256)
            parts = [(self.model.embed(g.to(self.device)), chunk) for g, _, chunk in batches]
            self.vectors = torch.zeros(len(self.graphs), parts[0][0].shape[1], device=self.device)
            for vectors, chunk in parts:
                self.vectors[chunk] = vectors
        return self.vectors

    def forward(self, graph: Graph | None, rows: np.ndarray) -> torch.Tensor:
        """The model's standardised prediction for a batch (the head on stored vectors when :attr:`head_only`)."""
        if self.head_only:
            return self.model.regress(self._crystal_vectors()[rows])
        return self.model(graph.to(self.device))

    def epoch_batches(self) -> list:
        """This epoch's training batches: which crystals share a batch is drawn anew (seeded by seed and epoch)."""
        rng = np.random.default_rng([self.config.seed, self.epoch])
        return self.batches(self.split["train"], self.config.batch_size, rng)

    def _param_groups(self) -> list[dict]:
        """All parameters at ``lr``; when fine-tuning, the head at ``lr`` and the encoder scaled or left out."""
        if self.fine_tune is None:
            return [{"params": list(self.model.parameters())}]
        head = [p for m in self.model.head_modules() for p in m.parameters()]
        encoder = [p for m in self.model.encoder_modules() for p in m.parameters()]
        if self.fine_tune.encoder == "frozen":
            for p in encoder:
                p.requires_grad_(False)
            return [{"params": head}]
        return [{"params": head}, {"params": encoder, "lr": self.config.lr * self.fine_tune.encoder_lr_scale}]

    def _set_mode(self, train: bool) -> None:
        self.model.train(train)
        if train and self.fine_tune is not None and self.fine_tune.encoder == "frozen":
            for module in self.model.encoder_modules():
                module.eval()  # batch norm keeps the pre-trained statistics

    def _state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "history": self.history,
            "best_val": self.best_val,
            "scaler": asdict(self.scaler),
            "key": self.key,
            "torch_rng": torch.get_rng_state(),
            "seconds": self.seconds,
            "timed_epochs": self.timed_epochs,
        }

    def resume(self, state: dict | None = None) -> bool:
        """Continue from ``state`` (default: ``last.pt`` if it exists) when it has this run's key (``config.epochs``
        may grow)."""
        path = self.out_dir / store.CHECKPOINT
        if state is None:
            if not path.exists():
                return False
            state = read_checkpoint(path)
        saved = state.get("key") or {}
        store.check_key(_without_epochs(saved), _without_epochs(self.key), path)
        if state["epoch"] > self.config.epochs:
            raise RunMismatch(
                f"{path} has {state['epoch']} epochs, more than the {self.config.epochs} asked for; "
                "delete the folder to retrain, or ask for at least as many epochs"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.history, self.best_val = state["epoch"], state["history"], state["best_val"]
        self.seconds, self.timed_epochs = state.get("seconds", 0.0), state.get("timed_epochs", 0)  # older: untimed
        torch.set_rng_state(state["torch_rng"])
        return True

    def run_epoch(self, batches, train: bool) -> tuple[float, float]:
        """One pass over batches (training steps if ``train``): mean MSE of the standardised target, and mean
        absolute error in the target's unit."""
        if self.head_only:
            self._crystal_vectors()  # made once, with the whole model in eval mode
        self._set_mode(train)
        squared, absolute, count = 0.0, 0.0, 0
        for graph, y, rows in batches:
            y = y.to(self.device)
            with torch.set_grad_enabled(train):
                pred = self.forward(graph, rows)
                loss = nn.functional.mse_loss(pred, self.scaler.encode(y))
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss.item()} in epoch {self.epoch + 1}; the last good "
                    f"checkpoint is {self.out_dir / 'last.pt'} (try a lower lr)"
                )
            if train:
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
            squared += loss.item() * len(y)
            absolute += float((self.scaler.decode(pred.detach()) - y).abs().sum())
            count += len(y)
        return squared / count, absolute / count

    def fit(self, show: bool = True, on_epoch: Callable[[dict[str, float]], None] | None = None) -> pd.DataFrame:
        """Train up to ``config.epochs``; returns the per-epoch history (MSE in standardised units).

        ``on_epoch`` sees each epoch's record after its checkpoints are written (a sweep reports to
        its pruner there, and may stop the run by raising).
        """
        bar = progress(self.config.epochs, "epochs", initial=self.epoch, unit="epoch", disable=not show)
        for _ in range(self.epoch, self.config.epochs):
            if self.patience_spent():
                break
            started = time.perf_counter()
            train_mse, train_mae = self.run_epoch(self.epoch_batches(), train=True)
            val_mse, val_mae = self.run_epoch(self.val_batches, train=False)
            lr = self.optimizer.param_groups[0]["lr"]  # the rate this epoch trained with
            self.scheduler.step()
            self.epoch += 1
            self.seconds += time.perf_counter() - started
            self.timed_epochs += 1
            record = {
                "epoch": self.epoch,
                "train_mse": train_mse,
                "val_mse": val_mse,
                "train_mae": train_mae,
                "val_mae": val_mae,
                "lr": lr,
            }
            for criterion in BEST_BY:
                if criterion != self.config.best_by and record[criterion] < min(
                    (h[criterion] for h in self.history), default=math.inf
                ):
                    store.save_torch(self.out_dir / f"best-{criterion}.pt", {"model": self.model.state_dict()})
            self.history.append(record)
            if record[self.config.best_by] < self.best_val:
                self.best_val = record[self.config.best_by]
                store.save_torch(self.out_dir / "best.pt", self._state())
            store.save_torch(self.out_dir / "last.pt", self._state())
            bar.update(1)
            bar.set_postfix(train=f"{train_mse:.4f}", val=f"{val_mse:.4f}", refresh=False)
            if on_epoch is not None:
                on_epoch(self.history[-1])
        bar.close()
        return pd.DataFrame(self.history)

    def patience_spent(self) -> bool:
        """Early stopping: ``config.patience`` epochs have passed since the best one by ``config.best_by``."""
        if self.config.patience is None or not self.history:
            return False
        best = min(range(len(self.history)), key=lambda i: self.history[i][self.config.best_by])
        return len(self.history) - 1 - best >= self.config.patience

    def load_best(self, criterion: str | None = None) -> None:
        """The weights of the best epoch by ``criterion`` (default: the run's own)."""
        other = criterion not in (None, self.config.best_by)
        self.model.load_state_dict(
            read_checkpoint(self.out_dir / (f"best-{criterion}.pt" if other else "best.pt"))["model"]
        )

    def by_criterion(self) -> dict[str, dict[str, float]]:
        """Test metrics and epoch of the best epoch by each criterion of ``BEST_BY`` (ends on the run's own best)."""
        history = pd.DataFrame(self.history)
        out = {}
        for criterion in BEST_BY:
            self.load_best(criterion)
            out[criterion] = {**self.evaluate("test")[0], "epoch": int(history[criterion].idxmin()) + 1}
        self.load_best()
        return out

    def evaluate(self, part: str = "test") -> tuple[dict[str, float], np.ndarray, np.ndarray]:
        """Metrics, predictions and row numbers on a split (original units)."""
        pred, rows = predict(self.model, self.batches(self.split[part], 256), self.scaler, self.forward)
        return regression_metrics(self.y[rows].numpy(), pred), pred, rows


def _without_epochs(key: dict) -> dict:
    config = {k: v for k, v in (key.get("config") or {}).items() if k != "epochs"}
    return {**key, "config": config}


@dataclass
class FitResult:
    """What one training run produced (all also written to its folder)."""

    history: pd.DataFrame
    metrics: dict[str, float]  # test split
    by_criterion: dict[str, dict[str, float]]  # test metrics (and epoch) at the best epoch of each criterion
    predictions: pd.DataFrame  # id, formula, split, true, pred
    data: GraphSet  # the crystals with a finite target (the others are its counted skips)
    folder: Path
    model: nn.Module | None  # the best epoch's weights; None if read back from a store that does not keep them
    trainer: Trainer | None  # None when the finished run was read back from the store
    seconds: float

    @property
    def reused(self) -> bool:
        return self.trainer is None


def model_key(name: str, hyper: dict) -> dict[str, object]:
    """The part of a run's key that says which model: name, hyperparameters, code version; for a model of another
    library (matgl) the library and its version too, so a run of one matgl release is never taken for another's."""
    library = foreign_library(name)
    return {
        "name": name,
        "hyper": hyper,
        "code_version": MODEL_CODE_VERSION,
        **({"library": library} if library else {}),
    }


def run_key(
    model: nn.Module,
    graph_set: GraphSet,
    target: str,
    config: TrainConfig,
    split: dict[str, np.ndarray],
    fine_tune: FineTune | None,
    extra: dict[str, Any] | None,
) -> dict:
    """What identifies a training run: model, data digest, split, configuration, code versions."""
    return store.canonical(
        {
            "model": model_key(model.name, model.hyper),
            "data": graph_set.data_key(target),
            "graph": model_file.graph_info(graph_set.spec),
            "split": split_digest(split),
            "config": config.key(),
            "fine_tune": asdict(fine_tune) if fine_tune else None,
            **(extra or {}),
        }
    )


def _metric_order(metrics: dict[str, float]) -> dict[str, float]:
    """``metrics`` in :func:`regression_metrics`' order (the store keeps keys sorted), so a table's columns do
    not depend on whether its runs were trained now or read back."""
    order = ("pearson_r", "mae", "rmse", "mse", "r2")
    return {**{k: metrics[k] for k in order if k in metrics}, **metrics}


def _read_back(folder: Path, graph_set: GraphSet) -> FitResult:
    """A finished run of the store as a :class:`FitResult` (its model loaded from ``model.pt``)."""
    record = store.Store(folder.parent).record(folder, "the notebook that trains it")
    return FitResult(
        store.read_csv(folder / "history.csv"),
        _metric_order(record["metrics"]),
        {name: _metric_order(metrics) for name, metrics in record["by_criterion"].items()},
        store.read_csv(folder / "predictions.csv"),
        graph_set,
        folder,
        model_file.load(folder / "model.pt").model if (folder / "model.pt").exists() else None,
        None,
        record["seconds"],
    )


def fit_regressor(
    build_model: Callable[[], nn.Module],
    graph_set: GraphSet,
    target: str,
    config: TrainConfig,
    out_dir: Path,
    resume: bool = True,
    formula_column: str = "reduced_formula",
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    show: bool = True,
    split: dict[str, np.ndarray] | None = None,
    fine_tune: FineTune | None = None,
    key_extra: dict[str, Any] | None = None,
    reuse: list[Path] | None = None,
) -> FitResult:
    """One run of the run store: seed, build the model, split, train (resuming if asked), evaluate the best epoch.

    The model is built by ``build_model`` after seeding, so its initial weights follow ``config.seed``.
    ``split`` (row numbers of the crystals with a finite target) replaces the seeded split in ``fractions``;
    ``fine_tune`` trains a pre-trained encoder frozen or at a lower learning rate; ``key_extra`` adds to the
    run's key what ``build_model`` depends on beyond the model's name and hyperparameters (e.g. an encoder);
    ``reuse`` names other run folders whose finished run is read back if its key is this run's.

    A finished run in ``out_dir`` with the same key is read back; one with another key raises
    :class:`mlib.store.RunMismatch`. Writes ``split.json``, ``last.pt``/``best.pt``, ``model.pt`` (the
    model file format of :mod:`mlib.model_file`), ``history.csv``, ``predictions.csv`` and ``run.json``.
    """
    out_dir = Path(out_dir)
    seed_everything(config.seed)
    model = build_model()
    graph_set = graph_set.with_finite(target)
    split = split if split is not None else split_indices(len(graph_set), config.seed, fractions)
    key = run_key(model, graph_set, target, config, split, fine_tune, key_extra)
    runs = store.Store(out_dir.parent)
    opened = runs.open(out_dir, key, read_checkpoint, reuse or (), _without_epochs, resume)  # epochs may grow
    if opened.finished:
        return _read_back(opened.folder, graph_set)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = graph_set.table["id"].astype(str).tolist()
    save_split(out_dir / "split.json", ids, split, config.seed)
    trainer = Trainer(model, graph_set.graphs, graph_set.target(target), split, config, out_dir, fine_tune, key)
    if opened.checkpoint is not None:
        trainer.resume(opened.checkpoint)
    history = trainer.fit(show)
    start = time.perf_counter()
    trainer.load_best()
    model_file.save(
        out_dir / "model.pt",
        model,
        target=target,
        scaler=trainer.scaler,
        spec=graph_set.spec,
        dataset=graph_set.name,
        data_digest=graph_set.data_digest(target),
        details={"config": asdict(config), "fine_tune": asdict(fine_tune) if fine_tune else None, **(key_extra or {})},
    )
    frames, metrics = [], {}
    for part in ("train", "val", "test"):
        part_metrics, pred, rows = trainer.evaluate(part)
        metrics = part_metrics if part == "test" else metrics
        table = graph_set.table.iloc[rows]
        frames.append(
            pd.DataFrame(
                {
                    "id": table["id"].to_numpy(),
                    "formula": table[formula_column].to_numpy(),
                    "split": part,
                    "true": trainer.y[rows].numpy(),
                    "pred": pred,
                }
            )
        )
    predictions = pd.concat(frames, ignore_index=True)
    by_criterion = trainer.by_criterion()
    seconds = trainer.seconds + time.perf_counter() - start  # training over all sittings, and evaluation
    store.write_csv(out_dir / "history.csv", history)
    store.write_csv(out_dir / "predictions.csv", predictions)
    best_epoch = int(history[config.best_by].idxmin()) + 1
    runs.finish(
        out_dir,
        key,
        {
            "metrics": metrics,
            "by_criterion": by_criterion,
            "epochs": len(history),
            "best_epoch": best_epoch,
            "crystals": len(graph_set),
            "train": len(split["train"]),
            "test": len(split["test"]),
            "seconds": seconds,
            "timed_epochs": trainer.timed_epochs,  # fewer than epochs: a run resumed from an untimed checkpoint
        },
    )
    # the tables as a later read-back gives them (float32 predictions as written), so that a study's tables do
    # not depend on whether a run was made in this sitting or read from the store
    history, predictions = store.read_csv(out_dir / "history.csv"), store.read_csv(out_dir / "predictions.csv")
    return FitResult(history, metrics, by_criterion, predictions, graph_set, out_dir, model, trainer, seconds)


@dataclass(frozen=True)
class FitJob:
    """One :func:`fit_regressor` run that a worker process can make: the model named, not built by a closure."""

    model: str
    hyper: dict
    config: TrainConfig
    out_dir: Path
    split: dict[str, np.ndarray] | None = None
    reuse: list[Path] | None = None


def _fit_job(shared: tuple[GraphSet, str], job: FitJob) -> dict:
    graph_set, target = shared
    result = fit_regressor(
        lambda: build_model(job.model, **job.hyper),
        graph_set,
        target,
        job.config,
        job.out_dir,
        show=False,
        split=job.split,
        reuse=job.reuse,
    )
    parts = result.predictions["split"].value_counts()
    return {
        "metrics": result.metrics,
        "train": int(parts.get("train", 0)),
        "test": int(parts.get("test", 0)),
        "epochs": len(result.history),
        "seconds": result.seconds,
    }


def fit_jobs(graph_set: GraphSet, target: str, jobs: list[FitJob], workers: int = 1, desc: str = "runs") -> list[dict]:
    """Each job's test ``metrics``, split sizes (``train``, ``test``), ``epochs`` and ``seconds``, in job order
    (finished runs are read back).

    ``workers > 1`` makes that many runs at once in separate processes, one thread each: on two cores,
    two one-thread runs train about 1.4x the crystals per second of one two-thread run.
    """
    return run_jobs(_fit_job, jobs, (graph_set, target), workers, desc)
