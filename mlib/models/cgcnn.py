"""Crystal Graph Convolutional Neural Network.

Xie, T. & Grossman, J. C. "Crystal Graph Convolutional Neural Networks for an Accurate and
Interpretable Prediction of Material Properties", Phys. Rev. Lett. 120, 145301 (2018).

Convolution (their Eq. 5), with batch norm as in the reference implementation:

    z_(i,j)k = v_i (+) v_j (+) u_(i,j)k
    v_i'     = softplus( v_i + BN( sum_{j,k} sigmoid(BN(z W_f + b_f)) * softplus(BN(z W_s + b_s)) ) )

u_(i,j)k is the Gaussian expansion of the bond distance; the crystal vector v_c is the mean of the
atom vectors after the last convolution; an MLP head maps v_c to the property.
"""

from __future__ import annotations

import dgl
import dgl.function as fn
import torch
from torch import nn
from torch.nn import functional as F

from mlib.graphs.atom_features import feature_table
from mlib.models.head import PooledRegressor, frame_hyper


class GaussianDistance(nn.Module):
    """exp(-(d - mu_k)^2 / width^2) for centres mu_k = start, start + step, ..., stop (CGCNN: 0..8 A, 0.2)."""

    def __init__(self, start: float = 0.0, stop: float = 8.0, step: float = 0.2, width: float | None = None) -> None:
        super().__init__()
        self.register_buffer("centers", torch.arange(start, stop + step / 2, step))
        self.width = width or step

    @property
    def dim(self) -> int:
        return len(self.centers)

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        return torch.exp(-((distance[:, None] - self.centers) ** 2) / self.width**2)


class AtomEmbedding(nn.Module):
    """The fixed 92-dim CGCNN atom features of each atomic number (from ``source``: the reference
    ``atom_init.json`` or pymatgen), then a linear map to ``hidden``."""

    def __init__(self, hidden: int, source: str) -> None:
        super().__init__()
        self.register_buffer("table", torch.from_numpy(feature_table(source)))
        self.linear = nn.Linear(self.table.shape[1], hidden)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(self.table[z])


class CGCNNConv(nn.Module):
    """One CGCNN convolution: gated, edge-conditioned sum over neighbours with a residual."""

    def __init__(self, hidden: int, edge_dim: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.full = nn.Linear(2 * hidden + edge_dim, 2 * hidden)  # [W_f | W_s] in one matrix
        self.bn_gate = nn.BatchNorm1d(2 * hidden)
        self.bn_sum = nn.BatchNorm1d(hidden)

    def forward(self, graph: dgl.DGLGraph, v: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """v: (atoms, hidden), u: (edges, edge_dim) -> (atoms, hidden).

        Uses z W = v_i W_i + v_j W_j + u_ij W_u: the atom terms are computed once per atom (about 3x fewer
        FLOPs per layer than multiplying the concatenated (edges, 2 hidden + edge_dim) matrix) and summed onto
        the edges by DGL's fused ``u_add_v`` (its backward is one sparse sum per atom, not a scatter into a
        dense gradient). Equal to :meth:`forward_literal` up to float rounding (a test checks it).
        """
        h = self.hidden
        weight, bias = self.full.weight, self.full.bias  # (2h, 2h + edge_dim): columns [W_i | W_j | W_u]
        centre, neighbour = v @ weight[:, :h].T, v @ weight[:, h : 2 * h].T  # (atoms, 2h) each
        # an edge runs from neighbour j (source) to centre atom i (destination)
        z = dgl.ops.u_add_v(graph, neighbour, centre) + torch.addmm(bias, u, weight[:, 2 * h :].T)
        gate, core = self.bn_gate(z).chunk(2, dim=1)
        messages = torch.sigmoid(gate) * F.softplus(core)
        return F.softplus(v + self.bn_sum(dgl.ops.copy_e_sum(graph, messages)))

    def forward_literal(self, graph: dgl.DGLGraph, v: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The paper's equation as written: z = v_i (+) v_j (+) u_ij on every edge, then one matrix product."""
        with graph.local_scope():
            graph.ndata["v"] = v
            graph.edata["u"] = u
            graph.apply_edges(lambda e: {"z": torch.cat([e.dst["v"], e.src["v"], e.data["u"]], dim=1)})
            gate, core = self.bn_gate(self.full(graph.edata["z"])).chunk(2, dim=1)
            graph.edata["m"] = torch.sigmoid(gate) * F.softplus(core)
            graph.update_all(fn.copy_e("m", "m"), fn.sum("m", "s"))
            return F.softplus(v + self.bn_sum(graph.ndata["s"]))


class CGCNN(PooledRegressor):
    """CGCNN regressor: atom embedding, ``n_conv`` convolutions, mean pooling, MLP head.

    Defaults are the paper's best thermal-expansion setting (3 convolutions, hidden 64) with the reference
    implementation's atom features (``atom_features="pymatgen"``: the same layout built from pymatgen).
    ``embed(graph)`` returns the pooled crystal vectors v_c; ``forward(graph)`` one value per crystal.
    """

    name = "cgcnn"

    def __init__(
        self,
        hidden: int = 64,
        n_conv: int = 3,
        head_hidden: int = 128,
        n_head: int = 1,
        atom_features: str = "reference",
        gaussian: GaussianDistance | None = None,
    ) -> None:
        super().__init__(hidden, head_hidden, n_head)
        self.hyper = frame_hyper(hidden, n_conv, head_hidden, n_head, atom_features)
        self.gaussian = gaussian or GaussianDistance()
        self.embedding = AtomEmbedding(hidden, atom_features)
        self.convs = nn.ModuleList(CGCNNConv(hidden, self.gaussian.dim) for _ in range(n_conv))

    def atom_vectors(self, graph: dgl.DGLGraph) -> torch.Tensor:
        v = self.embedding(graph.ndata["z"])
        u = self.gaussian(graph.edata["dist"])
        for conv in self.convs:
            v = conv(graph, v, u)
        return v
