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
import time
from collections.abc import Callable, Sequence

import flwr
import torch

from mlib.federated import sites
from mlib.federated.client import ClientData, client_data, from_arrays, local_update, to_arrays
from mlib.federated.strategy import SiteStrategy
from mlib.model_file import save as save_model
from mlib.models.registry import build_model
from mlib.params import FedConfig
from mlib.scaling import Standardizer
from mlib.training import seed_everything

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
        update = local_update(
            self.model,
            state,
            self.data,
            scaler,
            int(config["local_epochs"]),
            float(config["lr"]),
            float(config.get("proximal_mu", 0.0)),
            int(config["seed"]),
            int(config["server_round"]),
        )
        return to_arrays(update.state), update.n, {"loss": update.loss}

    def evaluate(self, parameters, config):
        return 0.0, 0, {}  # evaluation happens where a held-out set lives (the server's evaluate_fn)


def serve(
    address: str,
    config: FedConfig,
    initial_state: dict[str, torch.Tensor],
    n_clients: int,
    evaluate_fn: Callable | None = None,
) -> SiteStrategy:
    """Run the server until ``config.rounds`` are done (blocks; call from the main thread). Returns the strategy."""
    strategy = SiteStrategy(config, to_arrays(initial_state), n_clients, evaluate_fn)
    flwr.server.start_server(
        server_address=address, config=flwr.server.ServerConfig(num_rounds=config.rounds), strategy=strategy
    )
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


def run_server(args: argparse.Namespace) -> None:
    """Aggregate the sites' updates for ``--rounds`` rounds; save the final model (the study's model file)."""
    config = FedConfig(args.algorithm, args.rounds, args.local_epochs, args.mu, args.lr, seed=args.seed)
    seed_everything(args.seed)
    model = build_model(args.model, **args.hyper)
    strategy = serve(args.address, config, model.state_dict(), args.clients)
    model.load_state_dict(from_arrays(strategy.latest, model.state_dict()))
    save_model(
        args.out,
        model,
        target=None,
        scaler=strategy.scaler,
        spec=sites.spec(args),
        dataset="federated sites",
        data_digest=None,
        details={"config": config.as_dict(), "clients": args.clients, "rejected": strategy.rejected},
    )
    log.info("final model written to %s", args.out)


def run_client(args: argparse.Namespace) -> None:
    """Join the federation with this site's crystals and train until the server ends the run."""
    graph_set, rows = sites.site_graphs(args)
    data = client_data(graph_set.graphs, graph_set.target(args.target), [rows], args.batch_size, args.seed)[0]
    data.client = args.client_id
    join(args.server, SiteClient(build_model(args.model, **args.hyper), data))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlib.federated.flower",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sites.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    start = time.perf_counter()
    if args.role == "server":
        run_server(args)
    else:
        run_client(args)
    log.info("done in %.0f s", time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
