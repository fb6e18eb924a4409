"""Target scaling: the standardisation every model trains under, fitted on training crystals only."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Standardizer:
    """``(y - mean) / std`` with the mean and std of the training split (std 1 when it is 0)."""

    mean: float
    std: float

    @classmethod
    def fit(cls, y: torch.Tensor) -> Standardizer:
        std = float(y.std()) if len(y) > 1 else 1.0
        return cls(float(y.mean()), std if std > 0 else 1.0)

    def encode(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.mean) / self.std

    def decode(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.std + self.mean
