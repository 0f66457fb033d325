"""The registry of weighting strategies."""

from __future__ import annotations

from typing import Any

from mtl_core.components import parse_config
from mtl_core.context import TaskContext
from mtl_core.registry import Registry
from mtl_core.weighting._base import WeightingStrategy

STRATEGIES: Registry[type[WeightingStrategy]] = Registry("strategy")


def build_strategy(name: str, params: dict[str, Any] | None, ctx: TaskContext) -> WeightingStrategy:
    """Build strategy ``name`` with validated ``params`` (errors list the valid choices)."""
    cls = STRATEGIES.get(name)
    config = parse_config("strategy", name, cls.config_cls, params)
    return cls(config, ctx)


def list_strategies() -> list[str]:
    return STRATEGIES.names()
