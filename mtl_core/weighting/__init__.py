"""Weighting strategies: turn per-task losses (and gradients) of K trials into one update each.

Importing this package registers every built-in strategy in `STRATEGIES`, one module per
strategy, each written once over a leading trial dimension K (see `_base`). Build one with
`build_strategy(name, num_slots, num_tasks, device)`, fill a slot with `reset_slot`, and let
`strategy_gradients` turn a step into gradients.
"""

from __future__ import annotations

import importlib
import pkgutil

from mtl_core.weighting._autograd import strategy_gradients, task_gradients
from mtl_core.weighting._base import (
    GradientSpace,
    GradientWeighting,
    LossWeighting,
    StepInputs,
    StrategyConfig,
    WeightingStrategy,
    masked_softmax,
    normalise,
)
from mtl_core.weighting._look_ahead import LookAhead, grads_of
from mtl_core.weighting._mixed import MixedStrategy
from mtl_core.weighting._registry import (
    STRATEGIES,
    build_strategy,
    list_strategies,
    parse_strategy_config,
)

# One module per strategy: importing each public module registers its strategy, so adding a
# method is its module alone (no list of names to keep in step).
for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "STRATEGIES",
    "GradientSpace",
    "GradientWeighting",
    "LookAhead",
    "LossWeighting",
    "MixedStrategy",
    "StepInputs",
    "StrategyConfig",
    "WeightingStrategy",
    "build_strategy",
    "grads_of",
    "list_strategies",
    "masked_softmax",
    "normalise",
    "parse_strategy_config",
    "strategy_gradients",
    "task_gradients",
]
