"""Training and evaluation of graph regressors: seeded splits, standardised targets, checkpoints.

* The split (6:2:2 by default) is drawn from a seed and saved with the crystal ids.
* The target is standardised with the mean and std of the training split only.
* Graphs are batched once: batches are built at the start and their order is shuffled each epoch.
* ``last.pt`` is written after every finite epoch (resume continues from it after an interruption),
  ``best.pt`` at each new best validation loss; a NaN loss stops training with a clear error and
  leaves both checkpoints as they were.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from collections.abc import Callable
from pathlib import Path

import dgl
import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn
from tqdm.auto import tqdm


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 200
    batch_size: int = 64
    lr: float = 0.01
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")


@dataclass(frozen=True)
class FineTune:
    """How a pre-trained encoder is trained further: ``frozen`` (weights and batch-norm statistics fixed,
    only the head learns) or ``train`` (everything learns, the encoder at ``encoder_lr_scale`` x lr)."""

    encoder: str = "frozen"
    encoder_lr_scale: float = 0.1

    def __post_init__(self) -> None:
        if self.encoder not in ("frozen", "train"):
            raise ValueError(f"encoder must be 'frozen' or 'train', got {self.encoder!r}")
        if not self.encoder_lr_scale > 0:
            raise ValueError(f"encoder_lr_scale must be > 0, got {self.encoder_lr_scale}")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy, torch and DGL; deterministic kernels on CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    dgl.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def split_indices(n: int, seed: int, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
                  min_per_split: int = 1) -> dict[str, np.ndarray]:
    """A seeded random split of ``n`` crystals into train/val/test."""
    if not math.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    sizes = [int(round(f * n)) for f in fractions[:2]]
    sizes.append(n - sum(sizes))
    if min(sizes) < min_per_split:
        raise ValueError(f"{n} crystals are too few for a {fractions} split "
                         f"(sizes {sizes}; each split needs at least {min_per_split})")
    order = np.random.default_rng(seed).permutation(n)
    return {"train": order[:sizes[0]], "val": order[sizes[0]:sizes[0] + sizes[1]], "test": order[sizes[0] + sizes[1]:]}


def save_split(path: Path, ids: list[str], split: dict[str, np.ndarray], seed: int) -> None:
    path.write_text(json.dumps({"seed": seed, **{k: [ids[i] for i in v] for k, v in split.items()}}, indent=1))


@dataclass
class Standardizer:
    """Target scaling fitted on the training split only."""

    mean: float
    std: float

    @classmethod
    def fit(cls, y: torch.Tensor) -> "Standardizer":
        std = float(y.std()) if len(y) > 1 else 1.0
        return cls(float(y.mean()), std if std > 0 else 1.0)

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.mean) / self.std

    def decode(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.std + self.mean


def make_batches(graphs: list[dgl.DGLGraph], y: torch.Tensor, rows: np.ndarray, batch_size: int,
                 rng: np.random.Generator | None = None) -> list[tuple[dgl.DGLGraph, torch.Tensor, np.ndarray]]:
    """Batched graphs with targets and row numbers; ``rng`` shuffles which crystals share a batch."""
    rows = rng.permutation(rows) if rng is not None else np.asarray(rows)
    return [(dgl.batch([graphs[i] for i in chunk]), y[chunk], chunk)
            for chunk in (rows[k:k + batch_size] for k in range(0, len(rows), batch_size))]


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Pearson R, MAE, RMSE and R2."""
    err = pred - y
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return {"pearson_r": float(stats.pearsonr(y, pred)[0]) if len(y) > 1 else float("nan"),
            "mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean())),
            "r2": 1 - float((err**2).sum()) / ss_tot if ss_tot > 0 else float("nan")}


@torch.no_grad()
def predict(model: nn.Module, batches, scaler: Standardizer) -> tuple[np.ndarray, np.ndarray]:
    """Predictions (original units) and row numbers over pre-built batches."""
    model.eval()
    preds, rows = [], []
    for graph, _, chunk in batches:
        preds.append(scaler.decode(model(graph)).numpy())
        rows.append(chunk)
    return np.concatenate(preds), np.concatenate(rows)


class Trainer:
    """Adam + MSE on the standardised target, with best/last checkpoints and resume."""

    def __init__(self, model: nn.Module, graphs: list[dgl.DGLGraph], y: torch.Tensor,
                 split: dict[str, np.ndarray], config: TrainConfig, out_dir: Path,
                 fine_tune: FineTune | None = None) -> None:
        self.model, self.graphs, self.y, self.split, self.config = model, graphs, y, split, config
        self.fine_tune = fine_tune
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.scaler = Standardizer.fit(y[split["train"]])
        self.optimizer = torch.optim.Adam(self._param_groups(), lr=config.lr, weight_decay=config.weight_decay)
        rng = np.random.default_rng(config.seed)
        self.train_batches = make_batches(graphs, y, split["train"], config.batch_size, rng)
        self.val_batches = make_batches(graphs, y, split["val"], config.batch_size)
        self.history: list[dict[str, float]] = []
        self.best_val = math.inf
        self.epoch = 0

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
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": self.epoch,
                "history": self.history, "best_val": self.best_val, "scaler": asdict(self.scaler),
                "config": asdict(self.config), "torch_rng": torch.get_rng_state()}

    def resume(self) -> bool:
        """Continue from ``last.pt`` if it exists and was made with the same configuration (``epochs`` may grow)."""
        path = self.out_dir / "last.pt"
        if not path.exists():
            return False
        state = torch.load(path, weights_only=False)
        if {**state["config"], "epochs": self.config.epochs} != asdict(self.config):
            raise ValueError(f"{path} was written with {state['config']}, not {asdict(self.config)}; "
                             "use another output folder or delete it")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.history, self.best_val = state["epoch"], state["history"], state["best_val"]
        torch.set_rng_state(state["torch_rng"])
        return True

    def run_epoch(self, batches, train: bool) -> float:
        """One pass over pre-built batches (training steps if ``train``); mean MSE of the standardised target."""
        self._set_mode(train)
        total, count = 0.0, 0
        order = np.random.default_rng(self.config.seed + self.epoch).permutation(len(batches)) if train \
            else range(len(batches))
        for k in order:
            graph, y, _ = batches[k]
            with torch.set_grad_enabled(train):
                loss = nn.functional.mse_loss(self.model(graph), self.scaler.encode(y))
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss became {loss.item()} in epoch {self.epoch + 1}; the last good "
                                       f"checkpoint is {self.out_dir / 'last.pt'} (try a lower lr)")
            if train:
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
            total += loss.item() * len(y)
            count += len(y)
        return total / count

    def fit(self, progress: bool = True, on_epoch: Callable[[dict[str, float]], None] | None = None) -> pd.DataFrame:
        """Train up to ``config.epochs``; returns the per-epoch history (MSE in standardised units).

        ``on_epoch`` sees each epoch's record after its checkpoints are written (a sweep reports to
        its pruner there, and may stop the run by raising).
        """
        bar = tqdm(range(self.epoch, self.config.epochs), desc="epochs", disable=not progress)
        for _ in bar:
            train_mse = self.run_epoch(self.train_batches, train=True)
            val_mse = self.run_epoch(self.val_batches, train=False)
            self.epoch += 1
            self.history.append({"epoch": self.epoch, "train_mse": train_mse, "val_mse": val_mse})
            if val_mse < self.best_val:
                self.best_val = val_mse
                torch.save(self._state(), self.out_dir / "best.pt")
            torch.save(self._state(), self.out_dir / "last.pt")
            bar.set_postfix(train=f"{train_mse:.4f}", val=f"{val_mse:.4f}")
            if on_epoch is not None:
                on_epoch(self.history[-1])
        return pd.DataFrame(self.history)

    def load_best(self) -> None:
        self.model.load_state_dict(torch.load(self.out_dir / "best.pt", weights_only=False)["model"])

    def evaluate(self, part: str = "test") -> tuple[dict[str, float], np.ndarray, np.ndarray]:
        """Metrics, predictions and row numbers on a split (original units)."""
        pred, rows = predict(self.model, make_batches(self.graphs, self.y, self.split[part], 256), self.scaler)
        return regression_metrics(self.y[rows].numpy(), pred), pred, rows


@dataclass
class FitResult:
    """What one training run produced (all also written to its folder)."""

    history: pd.DataFrame
    metrics: dict[str, float]
    predictions: pd.DataFrame
    trainer: Trainer
    data: object  # the GraphSet trained on (crystals with a finite target; the others are its counted skips)


def fit_regressor(build_model: Callable[[], nn.Module], graph_set, target: str, config: TrainConfig, out_dir: Path,
                  resume: bool = True, formula_column: str = "reduced_formula",
                  fractions: tuple[float, float, float] = (0.6, 0.2, 0.2), progress: bool = True,
                  split: dict[str, np.ndarray] | None = None, fine_tune: FineTune | None = None) -> FitResult:
    """Seed, build the model, split, train (resuming if asked), reload the best epoch, evaluate on the test split.

    The model is built by ``build_model`` after seeding, so its initial weights follow ``config.seed``.

    ``split`` (row numbers of the crystals with a finite target) replaces the seeded split in ``fractions``;
    ``fine_tune`` trains a pre-trained encoder frozen or at a lower learning rate (:class:`FineTune`).

    Writes ``split.json`` (train/val/test in ``fractions``), ``last.pt``/``best.pt`` and ``model.pt``
    (model name, best weights, hyperparameters and target scaling) under ``out_dir``. Predictions carry id, formula, split, true and predicted value.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    model = build_model()
    graph_set = graph_set.with_finite(target)
    ids = graph_set.table["id"].astype(str).tolist()
    split = split if split is not None else split_indices(len(graph_set), config.seed, fractions)
    save_split(out_dir / "split.json", ids, split, config.seed)
    trainer = Trainer(model, graph_set.graphs, graph_set.target(target), split, config, out_dir, fine_tune)
    if resume:
        trainer.resume()
    history = trainer.fit(progress)
    trainer.load_best()
    torch.save({"name": getattr(model, "name", "cgcnn"), "model": model.state_dict(), "hyper": getattr(model, "hyper", {}), "scaler": asdict(trainer.scaler),
                "target": target, "config": asdict(config),
                "fine_tune": asdict(fine_tune) if fine_tune else None}, out_dir / "model.pt")
    frames = []
    for part in ("train", "val", "test"):
        part_metrics, pred, rows = trainer.evaluate(part)
        if part == "test":
            metrics = part_metrics
        table = graph_set.table.iloc[rows]
        frames.append(pd.DataFrame({"id": table["id"].to_numpy(), "formula": table[formula_column].to_numpy(),
                                    "split": part, "true": trainer.y[rows].numpy(), "pred": pred}))
    return FitResult(history, metrics, pd.concat(frames, ignore_index=True), trainer, graph_set)
