"""The server's side: reject bad client updates, then average weights in proportion to sample counts.

Batch norm (``bn``): ``average`` treats batch-norm weights and running statistics like every other
weight; ``local`` keeps them on the clients (FedBN, Li et al. 2021): each client trains with its own,
and the server's copy used for evaluation is their sample-weighted average, never sent back.
"""

from __future__ import annotations

import torch
from torch import nn


def batchnorm_keys(model: nn.Module) -> set[str]:
    """State-dict keys that belong to batch-norm layers (weights, biases, running statistics)."""
    keys = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            keys |= {f"{name}.{k}" for k in module.state_dict()}
    return keys


def finite(state: dict[str, torch.Tensor]) -> bool:
    """No NaN or infinite value in any floating tensor."""
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def weighted_average(states: list[dict[str, torch.Tensor]], weights: list[int]) -> dict[str, torch.Tensor]:
    """FedAvg: sum_k (n_k / n) w_k for floating tensors; integer counters take the largest value."""
    if not states or sum(weights) <= 0:
        raise ValueError("nothing to aggregate: no client update with data")
    total = float(sum(weights))
    out = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            out[key] = sum(s[key].double() * (w / total) for s, w in zip(states, weights)).to(first.dtype)
        else:
            out[key] = torch.stack([s[key] for s in states]).max(dim=0).values
    return out


def client_drift(
    start: dict[str, torch.Tensor], states: list[dict[str, torch.Tensor]], weights: list[int], keys: list[str]
) -> tuple[float, float]:
    """How far clients' updates disagree in one round, over the trainable weights ``keys``.

    With client updates d_k = w_k - w_start and their weighted mean d (what FedAvg applies), returns
    (drift, update): drift = sqrt(sum_k p_k ||d_k - d||^2), the weighted RMS distance of the updates from
    their mean (zero when all clients move alike), and update = ||d||, the length of the applied step.
    """
    total = float(sum(weights))
    flat = [torch.cat([(s[k].double() - start[k].double()).flatten() for k in keys]) for s in states]
    mean = sum(d * (w / total) for d, w in zip(flat, weights))
    drift = sum(float(((d - mean) ** 2).sum()) * (w / total) for d, w in zip(flat, weights)) ** 0.5
    return drift, float(mean.norm())
