"""GCN, GraphSAGE and GINE from ``dgl.nn``, in the CGCNN frame so that only the convolution differs.

Same fixed 92-dim atom features and linear embedding, same Gaussian bond-distance expansion, same
mean pooling and MLP head as :class:`mlib.models.cgcnn.CGCNN`. Each layer is residual with batch
norm, like CGCNN's: v' = softplus(v + BN(conv(v))).

* GCN: Kipf & Welling, "Semi-Supervised Classification with Graph Convolutional Networks", ICLR 2017
  (``dgl.nn.GraphConv``, symmetric normalisation; bond distances are not used).
* GraphSAGE: Hamilton, Ying & Leskovec, "Inductive Representation Learning on Large Graphs",
  NeurIPS 2017 (``dgl.nn.SAGEConv``, mean aggregator; bond distances are not used).
* GINE: Hu et al., "Strategies for Pre-training Graph Neural Networks", ICLR 2020
  (``dgl.nn.GINEConv``: sum_j ReLU(v_j + e_ij) with e_ij the Gaussian-expanded distance mapped to
  ``hidden``, then an MLP).
"""

from __future__ import annotations

import dgl
import torch
from dgl import nn as dglnn
from torch import nn
from torch.nn import functional as F

from mlib.models.cgcnn import AtomEmbedding, GaussianDistance
from mlib.models.head import PooledRegressor, frame_hyper

CONVS = ("gcn", "sage", "gine")


class DGLConvNet(PooledRegressor):
    """A crystal regressor whose convolutions are ``dgl.nn`` layers (``conv`` in gcn, sage, gine)."""

    def __init__(
        self,
        conv: str = "gcn",
        hidden: int = 64,
        n_conv: int = 3,
        head_hidden: int = 128,
        n_head: int = 1,
        atom_features: str = "reference",
    ) -> None:
        if conv not in CONVS:
            raise ValueError(f"unknown convolution {conv!r}; choose from {CONVS}")
        super().__init__(hidden, head_hidden, n_head)
        self.conv = conv
        self.name = conv
        self.hyper = frame_hyper(hidden, n_conv, head_hidden, n_head, atom_features)
        self.embedding = AtomEmbedding(hidden, atom_features)
        self.gaussian = GaussianDistance()
        self.edge_embedding = nn.Linear(self.gaussian.dim, hidden) if conv == "gine" else None
        self.convs = nn.ModuleList(self._layer(conv, hidden) for _ in range(n_conv))
        self.norms = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(n_conv))

    @staticmethod
    def _layer(conv: str, hidden: int) -> nn.Module:
        if conv == "gcn":
            return dglnn.GraphConv(hidden, hidden, norm="both", allow_zero_in_degree=True)
        if conv == "sage":
            return dglnn.SAGEConv(hidden, hidden, aggregator_type="mean")
        mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.Softplus(), nn.Linear(hidden, hidden))
        return dglnn.GINEConv(mlp, learn_eps=True)

    def atom_vectors(self, graph: dgl.DGLGraph) -> torch.Tensor:
        v = self.embedding(graph.ndata["z"])
        e = self.edge_embedding(self.gaussian(graph.edata["dist"])) if self.edge_embedding is not None else None
        for conv, norm in zip(self.convs, self.norms):
            h = conv(graph, v, e) if e is not None else conv(graph, v)
            v = F.softplus(v + norm(h))
        return v
