"""The server's Flower strategy: FedAvg/FedProx aggregation with pooled target scaling and rejected updates."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from flwr.common import GetPropertiesIns, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.strategy import FedProx

from mlib.federated.client import pooled_scaler
from mlib.params import FedConfig
from mlib.scaling import Standardizer

log = logging.getLogger(__name__)


class SiteStrategy(FedProx):
    """Flower's FedProx (FedAvg when ``config.algorithm`` is ``fedavg``: mu = 0) for ``n_clients`` sites.

    Before round 1 it asks every site for the count, sum and sum of squares of its targets, the only
    thing it learns about their data, and pools them into the target scaling every site then uses.
    Updates with NaN or infinite weights are rejected and logged; the latest global weights are kept in
    ``latest``.
    """

    def __init__(
        self, config: FedConfig, initial: list[np.ndarray], n_clients: int, evaluate_fn: Callable | None = None
    ) -> None:
        super().__init__(
            fraction_fit=1.0,
            fraction_evaluate=0.0,
            min_fit_clients=n_clients,
            min_evaluate_clients=0,
            min_available_clients=n_clients,
            on_fit_config_fn=self.fit_config,
            accept_failures=True,
            fit_metrics_aggregation_fn=self.loss_mean,
            evaluate_fn=evaluate_fn,
            proximal_mu=config.proximal_mu,
        )
        self.config, self.n_clients = config, n_clients
        self.latest: list[np.ndarray] = initial
        self.scaler: Standardizer | None = None
        self.rejected: list[tuple[int, str]] = []

    def initialize_parameters(self, client_manager):
        client_manager.wait_for(self.n_clients)
        props = [
            proxy.get_properties(GetPropertiesIns(config={}), timeout=None, group_id=None).properties
            for proxy in client_manager.all().values()
        ]
        self.scaler = pooled_scaler([(int(p["n"]), float(p["sum"]), float(p["sumsq"])) for p in props])
        return ndarrays_to_parameters(self.latest)

    def fit_config(self, server_round: int) -> dict:
        """What every site needs for a round: the round, target scaling, local epochs, learning rate, seed."""
        return {
            "server_round": server_round,
            "target_mean": self.scaler.mean,
            "target_std": self.scaler.std,
            "local_epochs": self.config.local_epochs,
            "lr": self.config.lr,
            "seed": self.config.seed,
        }

    @staticmethod
    def loss_mean(metrics: list[tuple[int, dict]]) -> dict:
        n = sum(k for k, _ in metrics)
        return {"loss": sum(k * m["loss"] for k, m in metrics) / n} if n else {}

    def aggregate_fit(self, server_round, results, failures):
        good = []
        for proxy, res in results:
            if all(np.isfinite(a).all() for a in parameters_to_ndarrays(res.parameters) if a.dtype.kind == "f"):
                good.append((proxy, res))
            else:
                self.rejected.append((server_round, proxy.cid))
                log.warning("round %d: rejected the update of client %s (non-finite weights)", server_round, proxy.cid)
        if not good:
            return None, {}
        parameters, metrics = super().aggregate_fit(server_round, good, failures)
        if parameters is not None:
            self.latest = parameters_to_ndarrays(parameters)
        return parameters, metrics
