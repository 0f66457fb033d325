"""GradVac (Wang et al. 2021) against torchjd's `GradVac`, and the vaccine's promise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch
from torchjd.aggregation import GradVac as TorchJDGradVac

from mtl_core.weighting._gram import gram64
from mtl_core.weighting.gradvac import GradVac, vaccinate
from tests.mtl_core.weighting._gradient_sets import combine_step
from tests.mtl_core.weighting._toy import make_strategy


def _gradvac(params: dict[str, Any], num_tasks: int, seeds: Sequence[int] = (0,)) -> GradVac:
    strategy = make_strategy("gradvac", params, num_tasks, seeds)
    assert isinstance(strategy, GradVac)
    return strategy


@pytest.mark.parametrize("num_slots", [1, 4])
@pytest.mark.parametrize("num_tasks", [2, 3, 5])
@pytest.mark.parametrize("beta", [0.5, 0.05])
def test_matches_torchjd_over_several_steps(num_slots: int, num_tasks: int, beta: float) -> None:
    """K rows = K torchjd aggregators, each fed from its trial's seed.

    torchjd draws each task's order of the other tasks with ``torch.randperm(T - 1)`` from the
    global generator, as ours does from the trial's generator: each oracle call runs on its
    own saved global RNG state, seeded like the trial. ``eps = 0`` in torchjd: it adds eps to
    the norms (ours has none; the inputs here have no zero gradient). torchjd's aggregate is
    the combined update itself; our reported weights are its coefficients normalised to Σ = T.
    """
    seeds = [11 + 3 * k for k in range(num_slots)]
    strategy = _gradvac({"beta": beta}, num_tasks, seeds)
    oracles = [TorchJDGradVac(beta=beta, eps=0.0) for _ in seeds]
    for oracle in oracles:
        oracle.reset()  # torchjd keeps φ̂ across calls: start from zero targets
    states = []
    for seed in seeds:
        torch.manual_seed(seed)
        states.append(torch.get_rng_state())
    gen = torch.Generator().manual_seed(num_tasks)
    corrected = 0
    for step in range(6):
        base = torch.randn(num_slots, 1, 9, generator=gen, dtype=torch.float64) * (step % 2)
        grads = torch.randn(num_slots, num_tasks, 9, generator=gen, dtype=torch.float64) + base
        grads = grads * 10.0 ** torch.empty(num_slots, num_tasks, 1).uniform_(-2, 2, generator=gen)
        combined, weights = combine_step(strategy, grads)
        for k, oracle in enumerate(oracles):
            torch.set_rng_state(states[k])
            expected = oracle(grads[k])
            states[k] = torch.get_rng_state()
            torch.testing.assert_close(combined[k], expected, rtol=1e-10, atol=1e-12)
        total = torch.full((num_slots,), float(num_tasks), dtype=torch.float64)
        torch.testing.assert_close(weights.sum(1), total)
        corrected += int((weights != weights[:, :1]).any())
    assert corrected  # the steps did correct something


def test_a_corrected_pair_reaches_its_target_cosine() -> None:
    """Two tasks: the EMA target is set from the cosine before the correction, and a pair
    below its target is turned exactly to it."""
    beta = 0.4
    strategy = _gradvac({"beta": beta}, 2)
    first = torch.tensor([[[1.0, 0.0, 0.0], [0.6, 0.8, 0.0]]], dtype=torch.float64)  # cos 0.6
    combine_step(strategy, first)  # targets 0: no correction, φ̂ ← β · 0.6
    target = beta * 0.6
    torch.testing.assert_close(
        strategy.targets[0], torch.tensor([[0, target], [target, 0]]).double()
    )
    second = torch.tensor([[[1.0, 0.0, 0.0], [-0.6, 0.8, 0.0]]], dtype=torch.float64)  # cos -0.6
    orders = torch.tensor([[[1], [0]]])
    coeff, _ = vaccinate(
        gram64(second),
        torch.ones(1, 2, dtype=torch.bool),
        orders,
        strategy.targets,
        torch.tensor([beta], dtype=torch.float64),
        torch.ones(1, dtype=torch.bool),
    )
    # T = 2: coefficients (1 + w21, 1 + w12), g1' = g1 + w12 g2 and g2' = g2 + w21 g1
    g1, g2 = second[0]
    for a, b, w in ((g1, g2, coeff[0, 1] - 1), (g2, g1, coeff[0, 0] - 1)):
        assert w > 0
        moved = a + w * b
        cos = moved @ b / (moved.norm() * b.norm())
        torch.testing.assert_close(cos, torch.tensor(target, dtype=torch.float64))


def test_identical_opposite_and_zero_gradients_stay_finite() -> None:
    strategy = _gradvac({"beta": 1.0}, 3, seeds=[0, 1, 2])
    g = torch.tensor([1.0, -2.0, 0.5])
    grads = torch.stack(
        [torch.stack([g, g, g]), torch.stack([g, -g, g]), torch.stack([g, torch.zeros(3), -g])]
    )
    for _ in range(4):  # β = 1 makes the target of identical gradients exactly 1
        combined, weights = combine_step(strategy, grads)
        assert torch.isfinite(combined).all() and torch.isfinite(weights).all()
        assert (weights >= 0).all()
    # a pair with a zero gradient has no cosine: its targets never move
    assert strategy.targets[2, 1].abs().sum() == 0 and strategy.targets[2, :, 1].abs().sum() == 0


def test_inactive_task_gets_no_weight_and_keeps_its_targets() -> None:
    strategy = _gradvac({}, 3)
    grads = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [-1.0, 1.0]]])
    combined, weights = combine_step(strategy, grads, torch.tensor([[1.0, 0.0, 1.0]]))
    assert weights[0, 1] == 0
    assert strategy.targets[0, 1].abs().sum() == 0 and strategy.targets[0, :, 1].abs().sum() == 0
    # with φ̂ = 0 at the first step GradVac is PCGrad: (½, ½) + (0, 1)
    torch.testing.assert_close(combined, torch.tensor([[0.5, 1.5]]))
