"""A pre-trained model's encoder in a new model: everything before the crystal vector, the head left new."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from mlib import model_file, store


class EncoderMismatch(ValueError):
    """A pre-trained model cannot provide the encoder of the model being fine-tuned."""


def head_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the model's head."""
    head = {id(p) for m in model.head_modules() for p in [*m.parameters(), *m.buffers()]}
    return {k for k, v in model.state_dict(keep_vars=True).items() if id(v) in head}


def load_encoder(model: nn.Module, path: Path) -> list[str]:
    """Copy the encoder weights of a model file into ``model``; returns the keys loaded."""
    saved = model_file.read(Path(path))
    if saved["name"] != model.name or store.canonical(saved["hyper"]) != store.canonical(model.hyper):
        raise EncoderMismatch(f"{path} holds {saved['name']} {saved['hyper']}, not {model.name} {model.hyper}")
    skip = head_keys(model)
    encoder = {k: v for k, v in saved["state"].items() if k not in skip}
    missing = set(model.state_dict()) - skip - set(encoder)
    if missing:
        raise EncoderMismatch(f"{path} lacks encoder weights {sorted(missing)[:3]} ...")
    model.load_state_dict(encoder, strict=False)
    return sorted(encoder)
