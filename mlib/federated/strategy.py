"""The server's strategy: Flower's FedProx (FedAvg with mu = 0) aggregating like the in-process engine.

Updates with NaN or infinite weights are rejected and logged; the others are averaged in proportion to
their crystal counts by :func:`mlib.federated.aggregate.weighted_average`, the in-process engine's own
aggregation, so a Flower federation and :class:`mlib.federated.simulation.Federation` give the same
weights.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import FedProx

from mlib.federated.aggregate import finite, weighted_average

log = logging.getLogger(__name__)


class SiteStrategy(FedProx):
    """FedProx over every connected site each round (``proximal_mu`` 0 for FedAvg), with rejected updates logged."""

    def __init__(self, n_sites: int, proximal_mu: float) -> None:
        super().__init__(
            fraction_train=1.0,
            fraction_evaluate=0.0,
            min_train_nodes=n_sites,
            min_evaluate_nodes=0,
            min_available_nodes=n_sites,
            proximal_mu=proximal_mu,
        )
        self.rejected: list[tuple[int, int]] = []  # (round, site)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        states, counts, losses = [], [], []
        for reply in valid:
            state = reply.content["arrays"].to_torch_state_dict()
            metrics = reply.content["metrics"]
            if not finite(state):
                self.rejected.append((server_round, int(metrics["client"])))
                log.warning(
                    "round %d: rejected the update of site %d (non-finite weights)",
                    server_round,
                    int(metrics["client"]),
                )
                continue
            states.append(state)
            counts.append(int(metrics["num-examples"]))
            losses.append(float(metrics["loss"]))
        if not states:
            return None, None
        loss = sum(n * value for n, value in zip(counts, losses)) / sum(counts)
        return ArrayRecord(weighted_average(states, counts)), MetricRecord({"loss": loss, "sites": len(states)})
