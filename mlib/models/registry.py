"""One entry point for every model of the study: ``build_model(name, **hyper)``.

Every model takes a batched graph (DGL for CGCNN, GCN, GraphSAGE, GINE; PyG for matgl's MEGNet and M3GNet) and
returns one value per crystal; ``embed(graph)`` returns the crystal vectors. ``graph_spec(name)`` says which graphs a model reads (``cgcnn`` graphs: 12
nearest neighbours within 8 A; ``matgl`` graphs: every pair within the model's cutoff).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from torch import nn

from mlib import catalogue
from mlib.graphs.neighbors import GraphSpec

MODEL_CODE_VERSION = 1  # bump when a model's layers or defaults change meaning; part of every run key


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


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "cgcnn": _cgcnn,
    "gcn": _dgl("gcn"),
    "sage": _dgl("sage"),
    "gine": _dgl("gine"),
    "megnet": _matgl("megnet"),
    "m3gnet": _matgl("m3gnet"),
}
MODELS: dict[str, ModelInfo] = {
    name: ModelInfo(
        build,
        catalogue.MODEL_DEFAULTS[name],
        catalogue.MODELS[name].graph_kind,
        catalogue.MODELS[name].library,
        catalogue.MODELS[name].reference,
    )
    for name, build in _BUILDERS.items()
}


def defaults(name: str) -> dict:
    """The documented default hyperparameters of a model."""
    return dict(_info(name).defaults)


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
        return GraphSpec(radius=catalogue.RADIUS, max_neighbors=catalogue.MAX_NEIGHBORS)
    return GraphSpec(radius=float(hyper.get("cutoff", defaults(name)["cutoff"])), kind="matgl")


def foreign_library(name: str) -> str | None:
    """The other library whose release a model's weights and runs belong to (matgl's models), or None."""
    info = MODELS.get(name)
    return info.library if info is not None and info.graph_kind == "matgl" else None


def model_table(names: list[str] | None = None) -> pd.DataFrame:
    """Name, implementation, graph kind, paper and default hyperparameters of each model."""
    return pd.DataFrame(
        [
            {
                "model": n,
                "implementation": MODELS[n].library,
                "graphs": MODELS[n].graph_kind,
                "reference": MODELS[n].reference,
                "defaults": defaults(n),
            }
            for n in names or MODELS
        ]
    )


def _info(name: str) -> ModelInfo:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[name]
