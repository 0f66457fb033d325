"""SDMGrad (Xiao et al. 2023) against torchjd's `SDMGradWeighting`, step after step."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import Tensor
from torchjd.aggregation import SDMGradWeighting

from tests.mtl_core.weighting._toy import make_strategy, step_inputs

SLOT_PARAMS = [
    {"lambda_": 0.3},
    {"lambda_": 0.05, "lr": 3.0, "momentum": 0.0, "iterations": 5},
    {"lambda_": 1.0, "lr": 20.0, "momentum": 0.9, "iterations": 40},
]


def independent_batches(
    num_slots: int, num_tasks: int, dim: int, gen: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """Three float64 ``[K, T, P]`` task-gradient sets: one mean, per-batch noise."""
    mean = torch.randn(num_slots, num_tasks, dim, generator=gen, dtype=torch.float64)
    return tuple(  # type: ignore[return-value]
        mean + 0.5 * torch.randn(mean.shape, generator=gen, dtype=torch.float64) for _ in range(3)
    )


def _oracle(params: dict[str, float]) -> SDMGradWeighting:
    return SDMGradWeighting(
        lr=params.get("lr", 10.0),
        momentum=params.get("momentum", 0.5),
        n_iter=int(params.get("iterations", 20)),
        lambda_=params["lambda_"],
    )


@pytest.mark.parametrize("num_tasks", [2, 3, 5])
def test_weights_and_update_match_torchjd_over_steps(num_tasks: int) -> None:
    # All K slots in one strategy: each runs its own number of inner steps.
    oracles = [_oracle(params) for params in SLOT_PARAMS]
    strategy = make_strategy("sdmgrad", None, num_tasks, seeds=(0, 1, 2))
    for slot, params in enumerate(SLOT_PARAMS):
        strategy.reset_slot(slot, type(strategy).config_cls(**params), strategy.contexts[0])  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(10 + num_tasks)
    for _ in range(6):
        first, second, update = independent_batches(len(SLOT_PARAMS), num_tasks, 7, gen)
        inputs = replace(
            step_inputs(torch.ones(len(SLOT_PARAMS), num_tasks, dtype=torch.float64)),
            extra_grads=(first, second),
        )
        combined, weights = strategy.combine(update, inputs)  # type: ignore[attr-defined]
        for k, oracle in enumerate(oracles):
            direction = oracle(first[k] @ second[k].T)
            torch.testing.assert_close(weights[k] / num_tasks, direction, rtol=1e-9, atol=1e-11)
            torch.testing.assert_close(combined[k], update[k].T @ direction, rtol=1e-9, atol=1e-11)


def test_an_inactive_task_gets_nothing_and_the_rest_match_torchjd_on_them() -> None:
    strategy = make_strategy("sdmgrad", {"lambda_": 0.3}, 3)
    oracle = _oracle({"lambda_": 0.3})
    gen = torch.Generator().manual_seed(3)
    first, second, update = independent_batches(1, 3, 6, gen)
    inputs = replace(
        step_inputs(torch.ones(3, dtype=torch.float64), scale=[1.0, 0.0, 1.0]),
        extra_grads=(first, second),
    )
    combined, weights = strategy.combine(update, inputs)  # type: ignore[attr-defined]
    on = [0, 2]
    direction = oracle(first[0, on] @ second[0, on].T)
    assert weights[0, 1] == 0
    torch.testing.assert_close(weights[0, on] / 2, direction, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(combined[0], update[0, on].T @ direction, rtol=1e-9, atol=1e-11)
