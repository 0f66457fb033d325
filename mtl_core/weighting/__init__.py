"""Weighting strategies: turn per-task losses (and gradients) into one update.

Importing this package registers every built-in strategy in `STRATEGIES`; build one with
`build_strategy(name, params, ctx)` and list them with `list_strategies()`.
"""

from __future__ import annotations

from mtl_core.weighting import (  # noqa: F401 - imported to register the strategies
    cagrad,
    dwa,
    famo,
    fixed,
    gradnorm,
    loss_balance,
    mgda,
    pcgrad,
    rlw,
    uncertainty,
)
from mtl_core.weighting._base import (
    ParameterGroups,
    StrategyConfig,
    WeightingStrategy,
    backward_task_parameters,
    normalise_weights,
)
from mtl_core.weighting._registry import STRATEGIES, build_strategy, list_strategies

__all__ = [
    "STRATEGIES",
    "ParameterGroups",
    "StrategyConfig",
    "WeightingStrategy",
    "backward_task_parameters",
    "build_strategy",
    "list_strategies",
    "normalise_weights",
]
