"""The registry of architectures."""

from __future__ import annotations

from typing import Any

import torch

from mtl_core.architectures._base import Architecture, MultiTaskModel, NetworkParts
from mtl_core.components import parse_config
from mtl_core.registry import Registry

ARCHITECTURES: Registry[type[Architecture]] = Registry("architecture")


def make_architecture(name: str, params: dict[str, Any] | None) -> Architecture:
    """Architecture ``name`` with its typed config (``ConfigError`` naming a bad parameter)."""
    cls = ARCHITECTURES.get(name)
    return cls(parse_config("architecture", name, cls.config_cls, params))


def build_model(name: str, params: dict[str, Any] | None, parts: NetworkParts) -> MultiTaskModel:
    """Build the multi-task model of architecture ``name`` from an experiment's parts
    (`Architecture.check_parts` first, so an unfit experiment is one ``ConfigError`` line)."""
    architecture = make_architecture(name, params)
    with torch.random.fork_rng(devices=[]):
        # A check may build throwaway blocks: the model's initialisation (drawn from the
        # trial's seed) must not depend on it.
        architecture.check_parts(parts)
    return architecture.build(parts)


def list_architectures() -> list[str]:
    return ARCHITECTURES.names()
