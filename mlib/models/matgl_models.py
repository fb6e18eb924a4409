"""MEGNet and M3GNet from matgl (the field's implementation, not rewritten), behind the study's interface.

* MEGNet: Chen, Ye, Zuo, Zheng & Ong, "Graph Networks as a Universal Machine Learning Framework for
  Molecules and Crystals", Chem. Mater. 31, 3564 (2019).
* M3GNet: Chen & Ong, "A universal graph deep learning interatomic potential for the periodic table",
  Nat. Comput. Sci. 2, 718 (2022).

The implementation is matgl 4 (PyTorch Geometric): matgl 1.0.0's M3GNet, on DGL, sent three-body messages
to the wrong bonds whenever ``threebody_cutoff < cutoff`` (matgl's changelog, 4.0.4), as in the study's 5 A /
4 A setting, and matgl 3.0.0 corrected M3GNet's message-passing convention. Graphs come from matgl's own
converter (``GraphSpec(kind="matgl")``, PyG ``Data``); M3GNet builds its three-body line graph with matgl's
``create_line_graph`` inside its forward pass. The wrappers take a batched graph and return one value per
crystal; ``embed(graph)`` returns what enters the model's final MLP (MEGNet: the Set2Set node and edge vectors
and the state; M3GNet: the weighted atom readout). Weights are trained from scratch: nothing is downloaded.
"""

from __future__ import annotations

from typing import Any

import torch
from matgl.config import DEFAULT_ELEMENTS
from matgl.graph._compute import compute_pair_vector_and_distance, create_line_graph
from matgl.models import M3GNet, MEGNet
from torch import nn

from mlib.catalogue import MODEL_DEFAULTS

ELEMENTS: tuple[str, ...] = tuple(DEFAULT_ELEMENTS)  # fixed, so graphs and weights agree across data sets

MEGNET_DEFAULTS = MODEL_DEFAULTS["megnet"]
M3GNET_DEFAULTS = MODEL_DEFAULTS["m3gnet"]


class MatglRegressor(nn.Module):
    """A matgl model as a crystal regressor: a batched PyG graph in (``num_graphs`` crystals), one value per
    crystal out."""

    def __init__(self, name: str, net: nn.Module, final: str, hyper: dict, state_dim: int = 0) -> None:
        super().__init__()
        self.name, self.net, self.hyper, self.state_dim = name, net, hyper, state_dim
        self.final_name = final  # the model's last MLP (an attribute of ``net``); its input is the crystal vector

    @property
    def final(self) -> nn.Module:
        return getattr(self.net, self.final_name)

    def head_modules(self) -> list[nn.Module]:
        """The model's final MLP (replaced and retrained when fine-tuned on a new property)."""
        return [self.final]

    def encoder_modules(self) -> list[nn.Module]:
        """Every other top-level part of the matgl model."""
        return [m for m in self.net.children() if m is not self.final]

    def _run(self, graph: Any) -> torch.Tensor:
        if self.state_dim:
            state = torch.zeros(_crystals(graph), self.state_dim, device=graph.pos.device)
            return self.net(graph, state_attr=state)
        return self.net(graph)

    def forward(self, graph: Any) -> torch.Tensor:
        """One value per crystal, shape (crystals,)."""
        return self._run(graph).reshape(-1)

    def embed(self, graph: Any) -> torch.Tensor:
        """Crystal vectors: the input of the model's final MLP, shape (crystals, features)."""
        captured = []
        handle = self.final.register_forward_hook(lambda module, args, out: captured.append(args[0]))
        try:
            self._run(graph)
        finally:
            handle.remove()
        return captured[0].reshape(_crystals(graph), -1)

    def regress(self, vectors: torch.Tensor) -> torch.Tensor:
        """The final MLP alone: crystal vectors (as :meth:`embed` gives them) to one value per crystal."""
        return self.final(vectors).reshape(-1)


class M3GNetRegressor(MatglRegressor):
    """M3GNet, whose three-body graph of each crystal can be built once (:meth:`prepare`) instead of in every
    forward pass: the same numbers (matgl checks the cached bonds against the current distances), less time."""

    def prepare(self, graphs: list[Any]) -> None:
        """Attach to each crystal graph its three-body graph at this model's ``threebody_cutoff`` (once: a graph
        that has one for this cutoff keeps it). Bond ids are stored as int32 to halve the memory."""
        cutoff = float(self.net.threebody_cutoff)
        for graph in graphs:
            if getattr(graph, "threebody_cutoff", None) == cutoff:
                continue
            vec, dist = compute_pair_vector_and_distance(graph.pos, graph.edge_index, graph.pbc_offshift)
            lg = create_line_graph(graph.edge_index, dist, vec, graph.pbc_offshift, graph.num_nodes, cutoff)
            graph.line_edge_index = lg["line_edge_index"].to(torch.int32)
            graph.kept_edge_ids = lg["kept_edge_ids"].to(torch.int32)
            graph.n_triple_ij = lg["n_triple_ij"].to(torch.int32)
            graph.threebody_cutoff = cutoff

    def _run(self, graph: Any) -> torch.Tensor:
        if getattr(graph, "line_edge_index", None) is None:
            return self.net(graph)  # not prepared: matgl builds the three-body graph in its forward pass
        l_g = {
            "line_edge_index": graph.line_edge_index.long(),
            "kept_edge_ids": graph.kept_edge_ids.long(),
            "n_triple_ij": graph.n_triple_ij.long(),
        }
        return self.net(graph, l_g=l_g)


def _crystals(graph: Any) -> int:
    """Crystals in a PyG graph: a ``Batch``'s ``num_graphs``, or 1 for a single ``Data``."""
    return int(getattr(graph, "num_graphs", 1))


def megnet(**hyper) -> MatglRegressor:
    """MEGNet (matgl) with the paper's crystal settings; ``hyper`` overrides :data:`MEGNET_DEFAULTS`."""
    hyper = {**MEGNET_DEFAULTS, **hyper}
    args = {k: tuple(v) if k.startswith("hidden_layer_sizes") else v for k, v in hyper.items()}
    net = MEGNet(element_types=ELEMENTS, include_state=True, **args)
    return MatglRegressor("megnet", net, "output_proj", hyper, state_dim=hyper["dim_state_embedding"])


def m3gnet(**hyper) -> MatglRegressor:
    """M3GNet (matgl) for an intensive property; ``hyper`` overrides :data:`M3GNET_DEFAULTS`."""
    hyper = {**M3GNET_DEFAULTS, **hyper}
    net = M3GNet(element_types=ELEMENTS, is_intensive=True, **hyper)
    return M3GNetRegressor("m3gnet", net, "final_layer", hyper)
