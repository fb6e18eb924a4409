"""Named profiles (smoke, cpu, paper): the parameters each notebook runs with.

The profiles live in one readable file, ``mlib/profiles.yaml``. A profile has an ``all`` block
(parameters shared by every notebook that declares them) and one block per notebook stem.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from mlib import params as P

PROFILE_FILE = Path(__file__).with_name("profiles.yaml")


class ProfileError(ValueError):
    """An unknown profile or notebook, or a profile block that names an unknown parameter."""


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's floats: ``1e-3`` and ``1E+5`` are numbers, not strings (YAML 1.1,
    PyYAML's default, needs a dot: ``1.0e-3``)."""


Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_value(text: str) -> Any:
    """A value as YAML 1.2 reads it (numbers, booleans, lists, null; anything else a string)."""
    return yaml.load(text, Loader=Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


def load(path: Path = PROFILE_FILE) -> dict[str, dict[str, Any]]:
    with open(path) as fh:
        return yaml.load(fh, Loader=Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


def names(path: Path = PROFILE_FILE) -> list[str]:
    return list(load(path))


def notebook_params(
    profile: str, notebook: str, overrides: dict[str, Any] | None = None, path: Path = PROFILE_FILE
) -> dict[str, Any]:
    """Parameters of ``notebook`` under ``profile``: ``all`` block, notebook block, then overrides.

    Overrides apply only where the notebook declares the name; checking that every override is
    known to at least one selected notebook is the runner's job.
    """
    profiles = load(path)
    if profile not in profiles:
        raise ProfileError(f"unknown profile {profile!r}; choose from {sorted(profiles)}")
    spec = profiles[profile] or {}
    known = P.names(notebook)
    block = spec.get(notebook) or {}
    bad = sorted(set(block) - known)
    if bad:
        raise ProfileError(f"profile {profile!r}, notebook {notebook}: unknown parameter(s) {bad}")
    values = {k: v for k, v in (spec.get("all") or {}).items() if k in known}
    values.update(block)
    values.update({k: v for k, v in (overrides or {}).items() if k in known})
    values["profile"] = profile
    return values
