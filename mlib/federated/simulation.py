"""The in-process federation: every client in turn, then the server, round after round.

Deterministic on CPU for a seed (what CI runs). Faults are handled the way a real server must:
a client with no data sits the rounds out, a client that fails mid-round is logged and the round
completes with the others, and an update with NaN or infinite weights is rejected and logged. The
global model is evaluated on the validation and test splits after every round; the round with the
lowest validation loss is the result (with ``patience``, rounds stop once that many passed without one).
Every round seeds its own local training (seed, round, client), so a run restored from :meth:`Federation.state`
after an interruption continues exactly as it would have.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import asdict

import numpy as np
import pandas as pd
import torch
from torch import nn

from mlib.federated.aggregate import batchnorm_keys, client_drift, finite, weighted_average
from mlib.federated.client import ClientData, ClientUpdate, client_data, local_update, pooled_scaler
from mlib.params import FedConfig
from mlib.progress import progress
from mlib.training import make_batches, predict, prepare_graphs, regression_metrics, seed_everything

log = logging.getLogger(__name__)


class FederationError(RuntimeError):
    """A round could not produce a global model (every client failed or was rejected)."""


UpdateFn = Callable[..., ClientUpdate]


class Federation:
    """Clients holding ``shards`` of the training split train ``build_model()`` together."""

    def __init__(
        self,
        build_model: Callable[[], nn.Module],
        graphs: list,
        y: torch.Tensor,
        split: dict[str, np.ndarray],
        shards: list[np.ndarray],
        config: FedConfig,
        update: UpdateFn = local_update,
    ) -> None:
        seed_everything(config.seed)
        self.model, self.config, self.update = build_model(), config, update
        prepare_graphs(self.model, graphs)
        self.graphs, self.y, self.split = graphs, y, split
        self.clients: list[ClientData] = client_data(graphs, y, shards, config.batch_size, config.seed)
        self.scaler = pooled_scaler([c.stats() for c in self.clients])
        self.global_state = copy.deepcopy(self.model.state_dict())
        self.bn_keys = batchnorm_keys(self.model) if config.bn == "local" else set()
        self.weight_keys = [name for name, p in self.model.named_parameters() if p.requires_grad]
        self.local_bn: dict[int, dict[str, torch.Tensor]] = {}
        self.val_batches = make_batches(graphs, y, split["val"], 256)
        self.test_batches = make_batches(graphs, y, split["test"], 256)
        self.log: list[dict] = []
        self.history: list[dict] = []
        self.best: tuple[float, int, dict] = (math.inf, 0, self.global_state)
        for c in self.clients:
            if c.n == 0:
                self._note(0, c.client, "no data", 0, "client holds no crystals; it sits every round out")

    def _note(
        self, round_: int, client: int, status: str, n: int, reason: str = "", loss: float = float("nan")
    ) -> None:
        self.log.append(
            {"round": round_, "client": client, "status": status, "crystals": n, "loss": loss, "reason": reason}
        )
        if status != "ok":
            log.warning("round %d, client %d: %s %s", round_, client, status, reason)

    def _start_state(self, client: int) -> dict[str, torch.Tensor]:
        state = dict(self.global_state)
        state.update(self.local_bn.get(client, {}))
        return state

    def run_round(self, round_: int) -> None:
        """One round: local updates of every client with data, checks, aggregation, evaluation."""
        accepted: list[ClientUpdate] = []
        for data in self.clients:
            if data.n == 0:
                continue
            try:
                upd = self.update(
                    self.model,
                    self._start_state(data.client),
                    data,
                    self.scaler,
                    self.config.local_epochs,
                    self.config.lr,
                    self.config.proximal_mu,
                    self.config.seed,
                    round_,
                )
            except Exception as exc:  # a failing site must not stop the federation
                self._note(round_, data.client, "failed", data.n, f"{type(exc).__name__}: {exc}")
                continue
            if not finite(upd.state):
                self._note(round_, data.client, "rejected", upd.n, "non-finite weights in the update")
                continue
            self._note(round_, data.client, "ok", upd.n, loss=upd.loss)
            accepted.append(upd)
        if not accepted:
            raise FederationError(f"round {round_}: no client update could be used (see the round log)")
        merged = weighted_average([u.state for u in accepted], [u.n for u in accepted])
        drift = client_drift(self.global_state, [u.state for u in accepted], [u.n for u in accepted], self.weight_keys)
        for u in accepted:
            if self.bn_keys:
                self.local_bn[u.client] = {k: u.state[k] for k in self.bn_keys}
        self.global_state = {k: (self.global_state[k] if k in self.bn_keys else v) for k, v in merged.items()}
        self._evaluate(round_, merged, len(accepted), drift)

    def evaluation_state(self) -> dict[str, torch.Tensor]:
        """The global weights with, in ``local`` batch-norm mode, the clients' averaged batch-norm state."""
        if not self.local_bn:
            return self.global_state
        bn = weighted_average(list(self.local_bn.values()), [self.clients[c].n for c in self.local_bn])
        return {**self.global_state, **bn}

    def _evaluate(self, round_: int, merged: dict, n_accepted: int, drift: tuple[float, float]) -> None:
        self.model.load_state_dict(self.evaluation_state())
        val_pred, val_rows = predict(self.model, self.val_batches, self.scaler)
        val_mse = float(
            np.mean(
                (self.scaler.encode(torch.from_numpy(val_pred)) - self.scaler.encode(self.y[val_rows])).numpy() ** 2
            )
        )
        test = self.evaluate("test")
        self.history.append(
            {
                "round": round_,
                "val_mse": val_mse,
                "test_mae": test["mae"],
                "test_r2": test["r2"],
                "clients": n_accepted,
                "client_drift": drift[0],
                "update_norm": drift[1],
            }
        )
        if val_mse < self.best[0]:
            self.best = (val_mse, round_, copy.deepcopy(self.evaluation_state()))

    def evaluate(self, part: str = "test") -> dict[str, float]:
        """Metrics of the model's current weights on a split (original units), incl. MSE."""
        pred, rows = predict(self.model, self.test_batches if part == "test" else self.val_batches, self.scaler)
        metrics = regression_metrics(self.y[rows].numpy(), pred)
        return {**metrics, "mse": metrics["rmse"] ** 2}

    def state(self) -> dict:
        """Everything the next round depends on (every round seeds its own local training)."""
        return {
            "round": len(self.history),
            "global_state": self.global_state,
            "local_bn": self.local_bn,
            "history": self.history,
            "log": self.log,
            "best": self.best,
        }

    def restore(self, state: dict) -> None:
        """Continue from :meth:`state` of an interrupted run with the same configuration and data."""
        self.global_state, self.local_bn = state["global_state"], state["local_bn"]
        self.history, self.log, self.best = state["history"], state["log"], state["best"]

    def _stopped_early(self) -> bool:
        rounds = len(self.history)
        return self.config.patience is not None and rounds > 0 and rounds - self.best[1] >= self.config.patience

    def run(self, show: bool = True, on_round: Callable[[Federation], None] | None = None) -> pd.DataFrame:
        """The rounds not yet run (all, unless :meth:`restore` was called); then the best-validation round's
        weights are loaded. ``on_round`` sees the federation after every round (e.g. to checkpoint it).
        Returns the per-round history."""
        done = len(self.history)
        bar = progress(
            self.config.rounds, f"{self.config.algorithm} rounds", initial=done, unit="round", disable=not show
        )
        for round_ in range(done + 1, self.config.rounds + 1):
            if self._stopped_early():
                break  # early stopping: no lower validation loss for `patience` rounds
            self.run_round(round_)
            if on_round is not None:
                on_round(self)
            bar.update(1)
            bar.set_postfix(test_mae=f"{self.history[-1]['test_mae']:.4g}")
        bar.close()
        self.model.load_state_dict(self.best[2])
        return pd.DataFrame(self.history)

    def predictions(self) -> pd.DataFrame:
        """Test-split predictions of the current weights, by row number."""
        pred, rows = predict(self.model, self.test_batches, self.scaler)
        return pd.DataFrame({"row": rows, "true": self.y[rows].numpy(), "pred": pred})

    def summary(self) -> dict:
        """Config, best round and the test metrics of the loaded weights."""
        return {
            **asdict(self.config),
            "best_round": self.best[1],
            **self.evaluate("test"),
            "failed": sum(r["status"] == "failed" for r in self.log),
            "rejected": sum(r["status"] == "rejected" for r in self.log),
        }
