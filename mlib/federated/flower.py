"""The federation over Flower (``flwr``): sites on different machines train one model together.

The client is :func:`mlib.federated.client.local_update` wrapped as a Flower ``NumPyClient``; the
server is Flower's own ``FedAvg`` or ``FedProx`` strategy (FedProx sends ``proximal_mu`` to the
clients, which add the proximal term). Before round 1 the server asks every client for the count,
sum and sum of squares of its targets, the only thing it learns about their data, and pools them into
the target scaling that every client then uses. Updates with NaN or infinite weights are rejected
and logged; a client that fails is counted by Flower as a failure and the round goes on without it.

Start a server, then one client per site (see the README):

    python -m mlib.federated.flower server --address 0.0.0.0:8080 --clients 5 --model gcn --rounds 20 --out fed.pt
    python -m mlib.federated.flower client --server HOST:8080 --model gcn --data site.csv --target band_gap
"""
from __future__ import annotations

import argparse
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence

import flwr
import numpy as np
import torch
from flwr.common import GetPropertiesIns, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.strategy import FedAvg, FedProx

from mlib.federated.client import ClientData, from_arrays, local_update, pooled_scaler, to_arrays
from mlib.federated.simulation import FedConfig
from mlib.training import Standardizer, seed_everything

log = logging.getLogger(__name__)


class SiteClient(flwr.client.NumPyClient):
    """One site: its crystals never leave it; it returns weights, its sample count and its loss.

    Local epochs, learning rate, seed and FedProx's mu come from the server with every round.
    """

    def __init__(self, model: torch.nn.Module, data: ClientData) -> None:
        self.model, self.data = model, data

    def get_properties(self, config):
        n, total, squares = self.data.stats()
        return {"n": n, "sum": total, "sumsq": squares}

    def get_parameters(self, config):
        return to_arrays(self.model.state_dict())

    def fit(self, parameters, config):
        state = from_arrays(parameters, self.model.state_dict())
        scaler = Standardizer(float(config["target_mean"]), float(config["target_std"]))
        update = local_update(self.model, state, self.data, scaler, int(config["local_epochs"]), float(config["lr"]),
                              float(config.get("proximal_mu", 0.0)), int(config["seed"]), int(config["server_round"]))
        return to_arrays(update.state), update.n, {"loss": update.loss}

    def evaluate(self, parameters, config):
        return 0.0, 0, {}  # evaluation happens where a held-out set lives (the server's evaluate_fn)


def make_strategy(config: FedConfig, initial_state: dict[str, torch.Tensor], n_clients: int,
                  evaluate_fn: Callable | None = None):
    """Flower's FedAvg or FedProx for ``config``, waiting for ``n_clients`` and keeping the latest weights."""
    base = FedProx if config.algorithm == "fedprox" else FedAvg

    class Strategy(base):
        scaler: Standardizer | None = None
        latest: list[np.ndarray] = to_arrays(initial_state)
        rejected: list[tuple[int, str]] = []

        def initialize_parameters(self, client_manager):
            client_manager.wait_for(n_clients)
            props = [proxy.get_properties(GetPropertiesIns(config={}), timeout=None, group_id=None).properties
                     for proxy in client_manager.all().values()]
            self.scaler = pooled_scaler([(int(p["n"]), float(p["sum"]), float(p["sumsq"])) for p in props])
            return ndarrays_to_parameters(self.latest)

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

    strategy: Strategy

    def fit_config(server_round: int) -> dict:
        return {"server_round": server_round, "target_mean": strategy.scaler.mean, "target_std": strategy.scaler.std,
                "local_epochs": config.local_epochs, "lr": config.lr, "seed": config.seed}

    def loss_mean(metrics):
        n = sum(k for k, _ in metrics)
        return {"loss": sum(k * m["loss"] for k, m in metrics) / n} if n else {}

    kwargs = dict(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n_clients, min_evaluate_clients=0,
                  min_available_clients=n_clients, on_fit_config_fn=fit_config, accept_failures=True,
                  fit_metrics_aggregation_fn=loss_mean, evaluate_fn=evaluate_fn)
    if config.algorithm == "fedprox":
        kwargs["proximal_mu"] = config.proximal_mu
    strategy = Strategy(**kwargs)
    return strategy


def serve(address: str, config: FedConfig, initial_state: dict[str, torch.Tensor], n_clients: int,
          evaluate_fn: Callable | None = None):
    """Run the server until ``config.rounds`` are done (blocks; call from the main thread). Returns the strategy."""
    strategy = make_strategy(config, initial_state, n_clients, evaluate_fn)
    flwr.server.start_server(server_address=address, config=flwr.server.ServerConfig(num_rounds=config.rounds),
                             strategy=strategy)
    return strategy


def wait_for_server(address: str, timeout: float = 600.0) -> None:
    """Block until something listens at HOST:PORT (a site may start before its server)."""
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no Flower server at {address} after {timeout:.0f} s") from None
            time.sleep(0.5)


def join(address: str, client: SiteClient, timeout: float = 600.0) -> None:
    """Connect a site to the server (waiting up to ``timeout`` for it) and train until the server ends the run."""
    wait_for_server(address, timeout)
    flwr.client.start_client(server_address=address, client=client.to_client())


def run_loopback(build_model: Callable[[], torch.nn.Module], clients: list[ClientData], config: FedConfig,
                 port: int = 18080) -> dict[str, torch.Tensor]:
    """A real gRPC federation on 127.0.0.1: one thread per client, the server here. Returns the final weights."""
    seed_everything(config.seed)
    model = build_model()
    template = model.state_dict()
    sites = [SiteClient(build_model(), data) for data in clients if data.n > 0]
    address = f"127.0.0.1:{port}"
    threads = [threading.Thread(target=join, args=(address, site), daemon=True) for site in sites]
    for thread in threads:
        thread.start()
    strategy = serve(address, config, template, len(sites))
    for thread in threads:
        thread.join(timeout=60)
    return from_arrays(strategy.latest, template)


def main(argv: Sequence[str] | None = None) -> int:
    from mlib.federated import sites

    parser = argparse.ArgumentParser(prog="python -m mlib.federated.flower", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sites.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    start = time.perf_counter()
    if args.role == "server":
        sites.run_server(args)
    else:
        sites.run_client(args)
    log.info("done in %.0f s", time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
