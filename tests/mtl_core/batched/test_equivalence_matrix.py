"""K trials batched equal the same trials trained alone, for every strategy, schedule and
architecture (new registrations join automatically), and one diverging slot changes nothing
for the others."""

from __future__ import annotations

from typing import Any

import pytest

from mtl_core.architectures import ARCHITECTURES, make_architecture
from mtl_core.batched import train_batch
from mtl_core.schedules import SCHEDULES
from mtl_core.trainer import train_trial
from mtl_core.weighting import STRATEGIES, parse_strategy_config
from tests.mtl_core.batched._helpers import (
    assert_batched_equals_alone,
    assert_same_result,
    synthetic_config,
)

#: Parameters a schedule needs on the synthetic experiment (tasks regression, classification).
SCHEDULE_PARAMS: dict[str, dict[str, Any]] = {
    "alternating": {"mode": "proportional", "per": "step"},
    "aux_decay": {"task": "classification", "until_epoch": 2},
    "curriculum": {"order": ["regression", "classification"]},
    "pretrain": {"task": "regression"},
}
GRADIENT = {name for name in STRATEGIES.names() if STRATEGIES.get(name).uses_task_gradients}


@pytest.mark.parametrize("schedule", SCHEDULES.names())
@pytest.mark.parametrize("strategy", STRATEGIES.names())
def test_every_strategy_under_every_schedule(strategy: str, schedule: str) -> None:
    params = SCHEDULE_PARAMS.get(schedule, {})
    assert_batched_equals_alone(
        [
            synthetic_config(
                strategy=strategy, schedule=schedule, schedule_params=params, seed=seed
            )
            for seed in (1, 2)
        ]
    )


# An architecture without shared parameters (soft sharing) gives gradient methods (and
# GradNorm) nothing to work on: those pairs are a ConfigError, tested in tests/mtl_core/
# test_trainer.py. Nor does every architecture expose one representation for a method that
# works on it (tests/mtl_core/batched/test_planning.py).
ON_REPRESENTATION = {
    name
    for name in STRATEGIES.names()
    if STRATEGIES.get(name).gradient_space(parse_strategy_config(name, None)) == "representation"
}
PAIRS = [
    (strategy, architecture)
    for strategy in STRATEGIES.names()
    for architecture in ARCHITECTURES.names()
    if not (
        not make_architecture(architecture, None).shares_parameters()
        and strategy in GRADIENT | {"gradnorm"}
    )
    and not (
        strategy in ON_REPRESENTATION
        and not make_architecture(architecture, None).exposes_representation()
    )
]


@pytest.mark.parametrize(("strategy", "architecture"), PAIRS)
def test_every_strategy_on_every_architecture(strategy: str, architecture: str) -> None:
    assert_batched_equals_alone(
        [synthetic_config(strategy=strategy, architecture=architecture, seed=s) for s in (3, 4)]
    )


def test_mgda_upper_bound_batches_and_equals_alone() -> None:
    params = {"upper_bound": True, "normalization": "l2"}
    configs = [synthetic_config(strategy="mgda", strategy_params=params, seed=s) for s in (1, 2)]
    assert_batched_equals_alone(configs)
    # Solved on real representation gradients: the weights move off uniform.
    weights = train_trial(configs[0]).history[-1].weights
    assert abs(weights["regression"] - 1.0) > 1e-3


@pytest.mark.parametrize("strategy", ["fixed", "rlw", "pcgrad", "cagrad"])
def test_a_diverging_slot_leaves_the_others_bit_identical(strategy: str) -> None:
    healthy = [synthetic_config(strategy=strategy, seed=s) for s in (1, 2)]
    with_neighbour = train_batch([*healthy, synthetic_config(strategy=strategy, seed=3)])
    with_diverging = train_batch([*healthy, synthetic_config(strategy=strategy, seed=3, lr=1e12)])
    assert with_diverging[2].stop_reason is not None
    assert with_diverging[2].stop_reason.startswith("diverged: ")
    assert "epoch 1" in with_diverging[2].stop_reason
    for alone, next_to_diverging in zip(with_neighbour[:2], with_diverging[:2], strict=True):
        assert next_to_diverging.stop_reason is None
        assert_same_result(alone, next_to_diverging, tol=0.0)
