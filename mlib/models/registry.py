"""One entry point for every model of the study: ``build_model(name, **hyper)``.

Every model takes a batched DGL graph and returns one value per crystal; ``embed(graph)`` returns
the crystal vectors. ``graph_spec(name)`` says which graphs a model reads (``cgcnn`` graphs: 12
nearest neighbours within 8 A; ``matgl`` graphs: every pair within the model's cutoff).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from torch import nn

from mlib.graphs.neighbors import GraphSpec

CGCNN_FRAME = {"hidden": 64, "n_conv": 3, "head_hidden": 128, "n_head": 1}  # the CGCNN paper's best setting


@dataclass(frozen=True)
class ModelInfo:
    build: Callable[..., nn.Module]
    defaults: dict
    graph_kind: str
    library: str
    reference: str


def _cgcnn(**hyper) -> nn.Module:
    from mlib.models.cgcnn import CGCNN

    return CGCNN(**hyper)


def _dgl(conv: str) -> Callable[..., nn.Module]:
    def build(**hyper) -> nn.Module:
        from mlib.models.dgl_convs import DGLConvNet

        return DGLConvNet(conv, **hyper)
    return build


def _matgl(name: str) -> Callable[..., nn.Module]:
    def build(**hyper) -> nn.Module:
        from mlib.models import matgl_models

        return getattr(matgl_models, name)(**hyper)
    return build


def _matgl_defaults(name: str) -> dict:
    from mlib.models import matgl_models

    return dict(getattr(matgl_models, f"{name.upper()}_DEFAULTS"))


MODELS: dict[str, ModelInfo] = {
    "cgcnn": ModelInfo(_cgcnn, CGCNN_FRAME, "cgcnn", "mlib", "Xie & Grossman, PRL 120, 145301 (2018)"),
    "gcn": ModelInfo(_dgl("gcn"), CGCNN_FRAME, "cgcnn", "dgl.nn.GraphConv", "Kipf & Welling, ICLR 2017"),
    "sage": ModelInfo(_dgl("sage"), CGCNN_FRAME, "cgcnn", "dgl.nn.SAGEConv", "Hamilton et al., NeurIPS 2017"),
    "gine": ModelInfo(_dgl("gine"), CGCNN_FRAME, "cgcnn", "dgl.nn.GINEConv", "Hu et al., ICLR 2020"),
    "megnet": ModelInfo(_matgl("megnet"), {}, "matgl", "matgl 1.0.0", "Chen et al., Chem. Mater. 31, 3564 (2019)"),
    "m3gnet": ModelInfo(_matgl("m3gnet"), {}, "matgl", "matgl 1.0.0", "Chen & Ong, Nat. Comput. Sci. 2, 718 (2022)"),
}


def defaults(name: str) -> dict:
    """The documented default hyperparameters of a model."""
    info = _info(name)
    return dict(info.defaults) if info.graph_kind != "matgl" else _matgl_defaults(name)


def build_model(name: str, **hyper) -> nn.Module:
    """Model ``name`` with its defaults, overridden by ``hyper`` (unknown names are an error)."""
    allowed = defaults(name)
    unknown = sorted(set(hyper) - set(allowed))
    if unknown:
        raise ValueError(f"{name} has no hyperparameter {', '.join(map(repr, unknown))}; it takes {sorted(allowed)}")
    model = _info(name).build(**{**allowed, **hyper})
    model.name = name
    return model


def graph_spec(name: str, **hyper) -> GraphSpec:
    """The graphs model ``name`` reads (for matgl models the radius is the model's ``cutoff``)."""
    if _info(name).graph_kind == "cgcnn":
        return GraphSpec()
    return GraphSpec(radius=float(hyper.get("cutoff", defaults(name)["cutoff"])), kind="matgl")


def model_table(names: list[str] | None = None) -> pd.DataFrame:
    """Name, implementation, graph kind, paper and default hyperparameters of each model."""
    return pd.DataFrame([{"model": n, "implementation": MODELS[n].library, "graphs": MODELS[n].graph_kind,
                          "reference": MODELS[n].reference, "defaults": defaults(n)} for n in names or MODELS])


def _info(name: str) -> ModelInfo:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[name]
