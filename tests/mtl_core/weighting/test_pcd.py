"""PCD (TMLR 2026) against torchjd's stateful `PCD`, step by step."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor
from torchjd.aggregation import PCD as TorchjdPCD
from torchjd.aggregation import PCDWeighting

from mtl_core.weighting import GradientWeighting
from tests.mtl_core.weighting._cone_oracle import KINDS, jacobian
from tests.mtl_core.weighting._gradient_sets import degenerate_slots
from tests.mtl_core.weighting._toy import make_strategy, step_inputs

STEPS = 3


def sequences(kind: str, num_tasks: int, num_slots: int) -> Tensor:
    """``[STEPS, K, T, P]`` float64 gradients, a new draw of ``kind`` at every step."""
    return torch.stack(
        [
            torch.stack(
                [
                    jacobian(kind, num_tasks, 7, 1000 * n + 10 * k + num_tasks)
                    for k in range(num_slots)
                ]
            )
            for n in range(STEPS)
        ]
    )


def run_ours(
    seq: Tensor, scale: Tensor | None = None, params: dict[str, Any] | None = None
) -> list[tuple[Tensor, Tensor]]:
    """(combined, weights) at every step of one strategy holding K trials."""
    _, k, t, _ = seq.shape
    strategy = make_strategy("pcd", params, t, seeds=tuple(range(k)))
    assert isinstance(strategy, GradientWeighting)
    scale = torch.ones(k, t, dtype=seq.dtype) if scale is None else scale
    inputs = step_inputs(torch.ones(k, t, dtype=seq.dtype), scale)
    return [strategy.combine(grads, inputs) for grads in seq]


@pytest.mark.parametrize("num_slots", [1, 4])
@pytest.mark.parametrize("num_tasks", [2, 3, 5])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_torchjd_over_steps(kind: str, num_tasks: int, num_slots: int) -> None:
    seq = sequences(kind, num_tasks, num_slots)
    results = run_ours(seq)
    for k in range(num_slots):
        aggregator = TorchjdPCD()  # one stateful instance per trial, as our slots
        weighting = PCDWeighting()
        for n in range(STEPS):
            j = seq[n, k]
            update, w = aggregator(j), weighting(j @ j.T)
            combined, weights = results[n]
            size = float(j.norm(dim=1).max())
            # the same d (μ may differ where secondary gradients are dependent)
            torch.testing.assert_close(combined[k], update, rtol=1e-7, atol=1e-9 * size)
            if kind in ("random", "conflicting", "zero_row") and float(w.sum()) > 0:
                # independent gradients: the same coefficients, ours normalised to Σ = T
                expected = w / w.sum() * num_tasks
                torch.testing.assert_close(weights[k], expected, rtol=1e-6, atol=1e-9)


def test_tau_is_a_parameter_and_each_slot_keeps_its_own() -> None:
    seq = sequences("conflicting", 3, 2)
    strategy = make_strategy("pcd", {"tau": 0.3, "beta": 0.9}, 3, seeds=(0, 1))
    assert isinstance(strategy, GradientWeighting)
    inputs = step_inputs(torch.ones(2, 3, dtype=seq.dtype))
    oracles = [TorchjdPCD(tau=0.3, beta=0.9) for _ in range(2)]
    for n in range(STEPS):
        combined, _ = strategy.combine(seq[n], inputs)
        for k in range(2):
            torch.testing.assert_close(combined[k], oracles[k](seq[n, k]), rtol=1e-7, atol=1e-9)


def test_secondary_tasks_get_their_share_of_progress() -> None:
    seq = sequences("conflicting", 4, 4)
    results = run_ours(seq, params={"tau": 0.2})
    combined, _ = results[0]
    # first step: the average is the squared norm itself, so g̃_t = g_t / ‖g_t‖ (eps aside);
    # d̃ is d rescaled, so ⟨u_j, d⟩ >= tau ‖d‖ / ‖d̃‖ > 0 for every secondary j
    units = seq[0] / seq[0].norm(dim=-1, keepdim=True)
    gains = torch.einsum("ktp,kp->kt", units, combined)
    assert (gains[:, 1:] > 0).all(), gains


def test_an_inactive_primary_hands_over_to_the_next_task() -> None:
    seq = sequences("random", 4, 2)
    scale = torch.tensor([[0.0, 1.0, 1.0, 1.0], [1.0, 0.0, 1.0, 1.0]], dtype=seq.dtype)
    seq = seq * scale[None, :, :, None]
    results = run_ours(seq, scale)
    first = TorchjdPCD()  # slot 0: task 1 leads, torchjd on rows 1..3
    second = TorchjdPCD()  # slot 1: task 0 leads, row 1 is a zero row for torchjd too
    for n in range(STEPS):
        combined, weights = results[n]
        torch.testing.assert_close(combined[0], first(seq[n, 0, 1:]), rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(combined[1], second(seq[n, 1]), rtol=1e-7, atol=1e-9)
        assert weights[0, 0] == 0 and weights[1, 1] == 0


def test_opposite_secondaries_drop_the_constraints() -> None:
    g = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, -1.0, 0.0]]], dtype=torch.float64)
    combined, _ = run_ours(g.unsqueeze(0))[0]
    torch.testing.assert_close(combined[0], g[0, 0])
    torch.testing.assert_close(combined[0], TorchjdPCD()(g[0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_degenerate_sets_stay_finite(dtype: torch.dtype, scale: float) -> None:
    grads = degenerate_slots()
    ((combined, weights),) = run_ours((grads * scale).to(dtype).unsqueeze(0))
    assert torch.isfinite(combined).all() and torch.isfinite(weights).all()
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.full((5,), 5.0, dtype=dtype))
    assert (combined[4] == 0).all()


def test_one_active_task_is_used_as_is() -> None:
    grads = torch.tensor([[[0.0, 0.0], [3.0, -4.0]]])
    ((combined, weights),) = run_ours(grads.unsqueeze(0), torch.tensor([[0.0, 1.0]]))
    torch.testing.assert_close(combined, torch.tensor([[3.0, -4.0]]))
    assert weights.tolist() == [[0.0, 1.0]]
