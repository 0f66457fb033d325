"""Weighting strategies: turn per-task losses (and gradients) of K trials into one update each.

Importing this package registers every built-in strategy in `STRATEGIES`, one module per
strategy, each written once over a leading trial dimension K (see `_base`). Build one with
`build_strategy(name, num_slots, num_tasks, device)`, fill a slot with `reset_slot`, and let
`strategy_gradients` turn a step into gradients.
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
from mtl_core.weighting._mixed import MixedStrategy
from mtl_core.weighting._registry import (
    STRATEGIES,
    build_strategy,
    list_strategies,
    parse_strategy_config,
)

__all__ = [
    "STRATEGIES",
    "GradientSpace",
    "GradientWeighting",
    "LossWeighting",
    "MixedStrategy",
    "StepInputs",
    "StrategyConfig",
    "WeightingStrategy",
    "build_strategy",
    "list_strategies",
    "masked_softmax",
    "normalise",
    "parse_strategy_config",
    "strategy_gradients",
    "task_gradients",
]
