"""CR-MOGM (Zhou et al. 2022) against torchjd's `CRMOGMWeighting` wrapped around each base."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor
from torchjd.aggregation import CRMOGMWeighting, WeightedAggregator
from torchjd.aggregation._weighting_bases import Weighting

from mtl_core.context import TaskContext
from mtl_core.weighting import (
    GradientWeighting,
    WeightingStrategy,
    build_strategy,
    parse_strategy_config,
)
from tests.mtl_core.weighting._toy import make_strategy, step_inputs


class _Replay(Weighting[Tensor]):
    """A torchjd weighting that returns the base method's weights, step after step.

    The base's own weights are checked against their oracles in their own test files; this
    test holds the smoothing to torchjd's.
    """

    def __init__(self, weights: list[Tensor]) -> None:
        super().__init__()
        self.weights = list(weights)

    def forward(self, stat: Tensor, /) -> Tensor:
        return self.weights.pop(0).to(stat.dtype)


def _coefficients(
    strategy: WeightingStrategy, grads: Tensor, scale: Tensor | None = None
) -> Tensor:
    assert isinstance(strategy, GradientWeighting)
    k, t = grads.shape[:2]
    return strategy.coefficients(grads, step_inputs(torch.ones(k, t, dtype=grads.dtype), scale))


@pytest.mark.parametrize("num_slots", [1, 4])
@pytest.mark.parametrize(("base", "alpha"), [("mgda", 0.9), ("nash_mtl", 0.5), ("gradvac", 0.0)])
def test_matches_torchjd_smoothing_of_the_base(num_slots: int, base: str, alpha: float) -> None:
    num_tasks = 3
    seeds = [5 + k for k in range(num_slots)]
    strategy = make_strategy("cr_mogm", {"alpha": alpha, "base": base}, num_tasks, seeds)
    plain = make_strategy(base, {}, num_tasks, seeds)  # the base alone, same seeds and draws
    gen = torch.Generator().manual_seed(1)
    steps = [
        torch.randn(num_slots, num_tasks, 6, generator=gen, dtype=torch.float64) for _ in range(5)
    ]
    raw = [_coefficients(plain, g) for g in steps]
    oracles = [
        WeightedAggregator(CRMOGMWeighting(_Replay([r[k] for r in raw]), alpha=alpha))
        for k in range(num_slots)
    ]
    for g in steps:
        coeff = _coefficients(strategy, g)
        combined = torch.einsum("kt,ktp->kp", coeff, g)
        for k, oracle in enumerate(oracles):
            torch.testing.assert_close(combined[k], oracle(g[k]), rtol=1e-10, atol=1e-12)
    assert not torch.allclose(raw[-1], coeff) or alpha == 0.0


def test_inactive_task_gets_no_weight_and_one_task_its_own_gradient() -> None:
    strategy = make_strategy("cr_mogm", {}, 3)
    g = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.5]]])
    _coefficients(strategy, g)
    coeff = _coefficients(strategy, g, torch.tensor([[1.0, 0.0, 1.0]]))
    assert coeff[0, 1] == 0
    coeff = _coefficients(strategy, g, torch.tensor([[0.0, 0.0, 1.0]]))
    assert coeff.tolist() == [[0.0, 0.0, 1.0]]


def test_slots_with_different_bases_keep_apart() -> None:
    """Slot 0 smooths MGDA, slot 1 GradVac: each row is its single-trial run."""
    strategy = build_strategy("cr_mogm", 2, 3, "cpu")
    configs: list[dict[str, Any]] = [{"base": "mgda"}, {"base": "gradvac", "alpha": 0.3}]
    singles = []
    for slot, params in enumerate(configs):
        ctx = TaskContext(
            ("a", "b", "c"), torch.device("cpu"), 10, torch.Generator().manual_seed(slot)
        )
        strategy.reset_slot(slot, parse_strategy_config("cr_mogm", params), ctx)
        singles.append(make_strategy("cr_mogm", params, 3, [slot]))
    gen = torch.Generator().manual_seed(2)
    for _ in range(3):
        g = torch.randn(2, 3, 4, generator=gen, dtype=torch.float64)
        both = _coefficients(strategy, g)
        for slot, single in enumerate(singles):
            torch.testing.assert_close(
                both[slot : slot + 1], _coefficients(single, g[slot : slot + 1])
            )
