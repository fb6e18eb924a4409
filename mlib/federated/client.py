"""What a client does each round: start from the global weights, train E local epochs on its own
crystals, send back the weights and its sample count (FedAvg, McMahan et al. 2017). With ``mu > 0``
the local loss carries FedProx's proximal term mu/2 ||w - w_global||^2 (Li et al. 2020).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mlib.scaling import Standardizer
from mlib.training import TrainingDiverged, make_batches


@dataclass
class ClientData:
    """One client's training crystals, batched once."""

    client: int
    batches: list
    n: int

    def stats(self) -> tuple[int, float, float]:
        """Sufficient statistics of the target (count, sum, sum of squares): all a client reveals of it."""
        y = torch.cat([b[1] for b in self.batches]).double() if self.batches else torch.zeros(0, dtype=torch.float64)
        return len(y), float(y.sum()), float((y**2).sum())


@dataclass
class ClientUpdate:
    client: int
    state: dict[str, torch.Tensor]
    n: int
    loss: float


def client_data(
    graphs: list, y: torch.Tensor, shards: list[np.ndarray], batch_size: int, seed: int
) -> list[ClientData]:
    """Each client's batches (which crystals share a batch is seeded per client)."""
    return [
        ClientData(
            c,
            make_batches(graphs, y, shard, batch_size, np.random.default_rng([seed, c])) if len(shard) else [],
            len(shard),
        )
        for c, shard in enumerate(shards)
    ]


def pooled_scaler(stats: list[tuple[int, float, float]]) -> Standardizer:
    """The target scaling of all clients' crystals together, from their sufficient statistics only."""
    n = sum(s[0] for s in stats)
    if n == 0:
        raise ValueError("no client holds any crystal")
    mean = sum(s[1] for s in stats) / n
    var = max(sum(s[2] for s in stats) / n - mean**2, 0.0) * n / max(n - 1, 1)
    return Standardizer(mean, var**0.5 if var > 0 else 1.0)


def local_update(
    model: nn.Module,
    global_state: dict[str, torch.Tensor],
    data: ClientData,
    scaler: Standardizer,
    epochs: int,
    lr: float,
    mu: float = 0.0,
    seed: int = 0,
    round_: int = 1,
) -> ClientUpdate:
    """Train ``model`` from ``global_state`` for ``epochs`` on ``data``; Adam starts fresh every round."""
    model.load_state_dict(global_state)
    model.train()
    torch.manual_seed(hash((seed, round_, data.client)) % 2**31)
    anchor = [p.detach().clone() for p in model.parameters()] if mu > 0 else []
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng([seed, round_, data.client])
    total, count = 0.0, 0
    for _ in range(epochs):
        for k in rng.permutation(len(data.batches)):
            graph, y, _ = data.batches[k]
            loss = nn.functional.mse_loss(model(graph), scaler.encode(y))
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"client {data.client}: loss became {loss.item()} in round {round_}")
            total, count = total + loss.item() * len(y), count + len(y)
            if anchor:
                loss = loss + mu / 2 * sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return ClientUpdate(data.client, state, data.n, total / max(count, 1))
