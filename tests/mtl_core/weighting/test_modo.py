"""MoDo (Chen et al. 2023) against torchjd's `MoDoWeighting`, step after step."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torchjd.aggregation import MoDoWeighting

from mtl_core.errors import ConfigError
from tests.mtl_core.weighting._toy import make_strategy, step_inputs
from tests.mtl_core.weighting.test_sdmgrad import independent_batches

SLOT_PARAMS = [{"gamma": 0.1, "rho": 0.1}, {"gamma": 0.5, "rho": 0.0}, {"gamma": 0.01, "rho": 1.0}]


@pytest.mark.parametrize("num_tasks", [2, 3, 5])
def test_weights_and_update_match_torchjd_over_steps(num_tasks: int) -> None:
    oracles = [MoDoWeighting(**params) for params in SLOT_PARAMS]
    strategies = [make_strategy("modo", params, num_tasks) for params in SLOT_PARAMS]
    gen = torch.Generator().manual_seed(num_tasks)
    for _ in range(8):
        first, second, update = independent_batches(len(SLOT_PARAMS), num_tasks, 7, gen)
        for k, (oracle, strategy) in enumerate(zip(oracles, strategies, strict=True)):
            lam = oracle(first[k] @ second[k].T)
            inputs = replace(
                step_inputs(torch.ones(num_tasks, dtype=torch.float64)),
                extra_grads=(first[k : k + 1], second[k : k + 1]),
            )
            combined, weights = strategy.combine(update[k : k + 1], inputs)  # type: ignore[attr-defined]
            torch.testing.assert_close(weights[0] / num_tasks, lam, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(combined[0], update[k].T @ lam, rtol=1e-10, atol=1e-12)


def test_k_slots_at_once_equal_each_slot_alone() -> None:
    together = make_strategy("modo", {"gamma": 0.3}, 3, seeds=(0, 1, 2))
    alone = [make_strategy("modo", {"gamma": 0.3}, 3) for _ in range(3)]
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        first, second, update = independent_batches(3, 3, 4, gen)
        inputs = replace(step_inputs(torch.ones(3, 3)), extra_grads=(first, second))
        combined, weights = together.combine(update.float(), inputs)  # type: ignore[attr-defined]
        for k, strategy in enumerate(alone):
            row = replace(
                step_inputs(torch.ones(3)), extra_grads=(first[k : k + 1], second[k : k + 1])
            )
            single, single_weights = strategy.combine(update[k : k + 1].float(), row)  # type: ignore[attr-defined]
            torch.testing.assert_close(combined[k : k + 1], single)
            torch.testing.assert_close(weights[k : k + 1], single_weights)


def test_without_the_two_further_batches_it_says_what_to_give() -> None:
    strategy = make_strategy("modo")
    with pytest.raises(ConfigError, match="3 independent batches per step"):
        strategy.combine(torch.ones(1, 2, 3), step_inputs(torch.ones(2)))  # type: ignore[attr-defined]
