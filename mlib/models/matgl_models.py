"""MEGNet and M3GNet from matgl (the field's implementation, not rewritten), behind the study's interface.

* MEGNet: Chen, Ye, Zuo, Zheng & Ong, "Graph Networks as a Universal Machine Learning Framework for
  Molecules and Crystals", Chem. Mater. 31, 3564 (2019).
* M3GNet: Chen & Ong, "A universal graph deep learning interatomic potential for the periodic table",
  Nat. Comput. Sci. 2, 718 (2022).

Graphs come from matgl's own converter (``GraphSpec(kind="matgl")``); M3GNet builds its three-body
line graph with matgl's ``create_line_graph`` inside its forward pass. The wrappers take a batched
graph and return one value per crystal; ``embed(graph)`` returns what enters the model's final MLP
(MEGNet: the Set2Set node and edge vectors and the state; M3GNet: the weighted atom readout).
Weights are trained from scratch: nothing is downloaded.
"""

from __future__ import annotations

import warnings

import dgl
import torch
from matgl.config import DEFAULT_ELEMENTS
from matgl.models import M3GNet, MEGNet
from torch import nn

from mlib.catalogue import MODEL_DEFAULTS

ELEMENTS: tuple[str, ...] = tuple(DEFAULT_ELEMENTS)  # fixed, so graphs and weights agree across data sets

# matgl 1.0.0 builds its spherical Bessel roots with torch.tensor(tensor), which warns on every M3GNet built.
warnings.filterwarnings("ignore", message="To copy construct from a tensor", category=UserWarning, module="matgl")

MEGNET_DEFAULTS = MODEL_DEFAULTS["megnet"]
M3GNET_DEFAULTS = MODEL_DEFAULTS["m3gnet"]


class MatglRegressor(nn.Module):
    """A matgl model as a crystal regressor: batched graph in, one value per crystal out."""

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

    def _run(self, graph: dgl.DGLGraph) -> torch.Tensor:
        with graph.local_scope():
            if self.state_dim:
                return self.net(graph, state_attr=torch.zeros(graph.batch_size, self.state_dim))
            return self.net(graph)

    def forward(self, graph: dgl.DGLGraph) -> torch.Tensor:
        return self._run(graph).reshape(-1)

    def embed(self, graph: dgl.DGLGraph) -> torch.Tensor:
        """Crystal vectors: the input of the model's final MLP, shape (crystals, features)."""
        captured = []
        handle = self.final.register_forward_hook(lambda module, args, out: captured.append(args[0]))
        try:
            self._run(graph)
        finally:
            handle.remove()
        return captured[0].reshape(graph.batch_size, -1)

    def regress(self, vectors: torch.Tensor) -> torch.Tensor:
        """The final MLP alone: crystal vectors (as :meth:`embed` gives them) to one value per crystal."""
        return self.final(vectors).reshape(-1)


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
    return MatglRegressor("m3gnet", net, "final_layer", hyper)
