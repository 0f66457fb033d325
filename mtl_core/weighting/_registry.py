"""The registry of weighting strategies (one class per module, each over K slots)."""

from __future__ import annotations

from typing import Any

import torch

from mtl_core.components import parse_config
from mtl_core.registry import Registry
from mtl_core.weighting._base import StrategyConfig, WeightingStrategy

STRATEGIES: Registry[type[WeightingStrategy[Any]]] = Registry("strategy")


def parse_strategy_config(name: str, params: dict[str, Any] | None) -> StrategyConfig:
    """Strategy ``name``'s typed config (one-line `ConfigError` naming the bad value)."""
    cls = STRATEGIES.get(name)
    return parse_config("strategy", name, cls.config_cls, params)


def build_strategy(
    name: str, num_slots: int, num_tasks: int, device: torch.device | str = "cpu"
) -> WeightingStrategy[Any]:
    """An empty strategy ``name`` of ``num_slots`` slots (fill them with ``reset_slot``)."""
    return STRATEGIES.get(name)(num_slots, num_tasks, torch.device(device))


def list_strategies() -> list[str]:
    return STRATEGIES.names()
