"""Contract tests walking every registered schedule over a 3-epoch run."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from mtl_core.errors import ConfigError
from mtl_core.schedules import SCHEDULES, build_schedule
from tests.mtl_core.schedules.helpers import task_context, walk

# Parameters for schedules that have required ones; the others run with their defaults.
EXAMPLE_PARAMS: dict[str, dict[str, Any]] = {
    "pretrain": {"task": "c", "epochs": 1},
    "aux_decay": {"task": "c", "until_epoch": 2},
}

VARIANTS: list[tuple[str, dict[str, Any]]] = [
    (name, EXAMPLE_PARAMS.get(name, {})) for name in SCHEDULES.names()
] + [
    ("alternating", {"mode": "proportional", "proportions": {"a": 1, "b": 3}}),
    ("alternating", {"per": "epoch"}),
    ("curriculum", {"order": ["c", "a", "b"], "ramp_epochs": 0.5}),
    ("aux_decay", {"task": "a", "until_epoch": 3, "shape": "cosine"}),
    ("aux_decay", {"task": "a", "until_epoch": 3, "shape": "exponential"}),
]


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=[f"{n}-{p}" for n, p in VARIANTS])
def test_multipliers_are_valid_at_every_step(name: str, params: dict[str, Any]) -> None:
    ctx = task_context(epochs=3)
    schedule = build_schedule(name, params, ctx)
    for step in walk(epochs=3):
        m = schedule.multipliers(step)
        assert m.shape == (3,)
        assert m.dtype.is_floating_point
        assert m.device == ctx.device
        assert bool(torch.isfinite(m).all())
        assert bool((m >= 0).all())
        assert bool((m > 0).any()), f"no task active at {step}"


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_returned_tensor_is_the_callers_to_change(name: str) -> None:
    schedule = build_schedule(name, EXAMPLE_PARAMS.get(name, {}), task_context())
    step = next(walk(epochs=1))
    first = schedule.multipliers(step)
    first.mul_(0)
    assert bool((schedule.multipliers(step) > 0).any())


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_unknown_parameter_is_a_config_error(name: str) -> None:
    params = {**EXAMPLE_PARAMS.get(name, {}), "nonsense": 1}
    with pytest.raises(ConfigError, match="no parameter 'nonsense'"):
        build_schedule(name, params, task_context())


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("pretrain", {"task": "z", "epochs": 1}),
        ("aux_decay", {"task": "z", "until_epoch": 1}),
        ("curriculum", {"order": ["a", "b", "z"]}),
        ("alternating", {"mode": "proportional", "proportions": {"z": 1.0}}),
    ],
)
def test_unknown_task_is_a_config_error_listing_the_tasks(
    name: str, params: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError, match="unknown task 'z'; valid choices: a, b, c"):
        build_schedule(name, params, task_context())


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("pretrain", {"task": "a", "epochs": 3}, r"epochs must be in 1\.\.2.*got 3"),
        ("pretrain", {"task": "a", "epochs": 7}, r"got 7"),
        ("aux_decay", {"task": "a", "until_epoch": 4}, r"until_epoch must be in 1\.\.3.*got 4"),
        ("curriculum", {"stage_epochs": 2}, r"joins at epoch 4.*only 3 epochs"),
    ],
)
def test_epochs_beyond_the_trial_are_a_config_error(
    name: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build_schedule(name, params, task_context(epochs=3))
