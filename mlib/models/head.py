"""What the study's DGL models share after their convolutions: mean pooling and the CGCNN MLP head."""

from __future__ import annotations

import dgl
import torch
from torch import nn
from torch.nn import functional as F


def frame_hyper(hidden: int, n_conv: int, head_hidden: int, n_head: int, atom_features: str) -> dict:
    """The constructor arguments of a model in the CGCNN frame (CGCNN, GCN, GraphSAGE, GINE), as saved."""
    return {
        "hidden": hidden,
        "n_conv": n_conv,
        "head_hidden": head_hidden,
        "n_head": n_head,
        "atom_features": atom_features,
    }


class PooledRegressor(nn.Module):
    """Mean of the atom vectors (the crystal vector v_c), then CGCNN's softplus MLP head to one value.

    Subclasses define ``atom_vectors(graph)``; ``embed(graph)`` gives v_c, shape (crystals, hidden),
    ``regress(v_c)`` the head's value per crystal, and ``forward(graph)`` both in turn.
    """

    def __init__(self, hidden: int, head_hidden: int, n_head: int) -> None:
        super().__init__()
        if min(hidden, head_hidden, n_head) < 1:
            raise ValueError(f"hidden, head_hidden and n_head must be >= 1, got {hidden}, {head_hidden}, {n_head}")
        self.conv_to_head = nn.Linear(hidden, head_hidden)
        self.head = nn.ModuleList(nn.Linear(head_hidden, head_hidden) for _ in range(n_head - 1))
        self.out = nn.Linear(head_hidden, 1)

    def atom_vectors(self, graph: dgl.DGLGraph) -> torch.Tensor:
        raise NotImplementedError

    def head_modules(self) -> list[nn.Module]:
        """The MLP head (replaced and retrained when the model is fine-tuned on a new property)."""
        return [self.conv_to_head, self.head, self.out]

    def encoder_modules(self) -> list[nn.Module]:
        """Everything before the crystal vector: embeddings and convolutions."""
        head = {id(m) for m in self.head_modules()}
        return [m for m in self.children() if id(m) not in head]

    def embed(self, graph: dgl.DGLGraph) -> torch.Tensor:
        """Crystal vectors v_c: the mean of each crystal's atom vectors."""
        with graph.local_scope():
            graph.ndata["v"] = self.atom_vectors(graph)
            return dgl.mean_nodes(graph, "v")

    def regress(self, vectors: torch.Tensor) -> torch.Tensor:
        """The head: crystal vectors, shape (crystals, hidden), to one value per crystal."""
        h = F.softplus(self.conv_to_head(F.softplus(vectors)))
        for layer in self.head:
            h = F.softplus(layer(h))
        return self.out(h).squeeze(-1)

    def forward(self, graph: dgl.DGLGraph) -> torch.Tensor:
        return self.regress(self.embed(graph))
