"""Small fixed task-gradient sets the gradient methods' oracle tests share, and the one loop
that runs a strategy on them against torchjd slot by slot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from mtl_core.weighting import GradientWeighting, WeightingStrategy, normalise
from tests.mtl_core.weighting._cone_oracle import EnumerationProjector, jacobian
from tests.mtl_core.weighting._toy import make_strategy, step_inputs


def with_inactive_tasks(num_slots: int) -> tuple[Tensor, Tensor]:
    """(``[K, 4, 6]`` float64 gradients, ``[K, 4]`` scale): task 1 inactive in every slot,
    task 3 in the last one too; the inactive rows are zero, as the trainer gives them."""
    gen = torch.Generator().manual_seed(3)
    grads = torch.randn(num_slots, 4, 6, generator=gen, dtype=torch.float64)
    scale = torch.ones(num_slots, 4, dtype=torch.float64)
    scale[:, 1] = 0.0
    scale[-1, 3] = 0.0
    return grads * scale.unsqueeze(-1), scale


def degenerate_slots() -> Tensor:
    """``[5, 5, 3]`` float64: five slots of five tasks, one random and then an opposite pair,
    a duplicate pair, rank 1 with mixed signs, and all zero."""
    gen = torch.Generator().manual_seed(5)
    grads = torch.randn(5, 5, 3, generator=gen, dtype=torch.float64)
    grads[1, 1] = -grads[1, 0]
    grads[2, 1] = grads[2, 0]
    grads[3] = grads[3, :1] * torch.tensor([[1.0], [-2.0], [0.5], [-0.1], [3.0]])
    grads[4] = 0.0
    return grads


def kind_slots(kind: str, num_tasks: int, num_slots: int) -> Tensor:
    """``[K, T, 7]`` float64: slot ``s`` holds `jacobian` of ``kind`` drawn with seed
    ``100 s + T``, so a K = 1 run sees the first slot of a K = 4 run."""
    return torch.stack(
        [jacobian(kind, num_tasks, 7, 100 * s + num_tasks) for s in range(num_slots)]
    )


def run_gradient(
    name: str, grads: Tensor, scale: Tensor | None = None, params: dict[str, Any] | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """(combined ``[K, P]``, weights ``[K, T]``, coefficients ``[K, T]``) of strategy ``name``
    on ``grads [K, T, P]``, one slot per trial, every slot with config ``params``."""
    k, t, _ = grads.shape
    strategy = make_strategy(name, params, t, seeds=tuple(range(k)))
    assert isinstance(strategy, GradientWeighting)
    scale = torch.ones(k, t, dtype=grads.dtype) if scale is None else scale
    inputs = step_inputs(torch.ones(k, t, dtype=grads.dtype), scale)
    combined, weights = strategy.combine(grads, inputs)
    return combined, weights, strategy.coefficients(grads, inputs)


def combine_step(
    strategy: WeightingStrategy[Any], grads: Tensor, scale: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(combined ``[K, P]``, reported weights ``[K, T]``) of one step of ``strategy``, which
    keeps its state between calls."""
    assert isinstance(strategy, GradientWeighting)
    k, t = grads.shape[:2]
    return strategy.combine(grads, step_inputs(torch.ones(k, t, dtype=grads.dtype), scale))


def coefficient_step(
    strategy: WeightingStrategy[Any], grads: Tensor, scale: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """(coefficients, combined, reported weights) of one step of ``strategy``, which keeps
    its state between calls; the combination is formed here from the coefficients."""
    assert isinstance(strategy, GradientWeighting)
    k, t = grads.shape[:2]
    inputs = step_inputs(torch.ones(k, t, dtype=grads.dtype), scale)
    coeff = strategy.coefficients(grads, inputs)
    combined = torch.einsum("kt,ktp->kp", coeff, grads)
    return coeff, combined, normalise(coeff, inputs.scale > 0)


def spread_gradients(
    num_slots: int, num_tasks: int, decades: float, gen: torch.Generator
) -> Tensor:
    """``[K, T, 8]`` float64 normal gradients, each task's norm scaled by 10^U(±decades)."""
    grads = torch.randn(num_slots, num_tasks, 8, generator=gen, dtype=torch.float64)
    spread = torch.empty(num_slots, num_tasks, 1).uniform_(-decades, decades, generator=gen)
    return grads * 10.0**spread


def run_degenerate_slots(
    name: str, dtype: torch.dtype, scale: float
) -> tuple[Tensor, Tensor, Tensor]:
    """`run_gradient` on `degenerate_slots` times ``scale`` in ``dtype``, checked to be finite
    with weights >= 0 summing to T = 5 in every slot; for the caller's own checks."""
    combined, weights, coeff = run_gradient(name, (degenerate_slots() * scale).to(dtype))
    assert torch.isfinite(combined).all() and torch.isfinite(weights).all()
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.full((5,), 5.0, dtype=dtype))
    return combined, weights, coeff


class Reference(NamedTuple):
    """A torchjd aggregator's answer on one ``[T, P]`` Jacobian, in our conventions.

    ``update``: the direction ours must give; None where torchjd's is no reference (it
    divides rounding by a floor) and ours must be the exact zero step. ``weights``: the
    coefficients of ``update`` on the rows, or None where the aggregator has none.
    """

    update: Tensor | None
    weights: Tensor | None = None


def projected_reference(
    aggregator_cls: Callable[..., Callable[[Tensor], Tensor]],
    weighting_cls: Callable[..., Callable[[Tensor], Tensor]],
    j: Tensor,
    reg_eps: float = 1e-4,
) -> Reference:
    """torchjd's (update, weights) on one ``[T, P]`` Jacobian for a method that projects
    onto the dual cone (UPGrad, DualProj), with the exact `EnumerationProjector`."""
    projector = EnumerationProjector(reg_eps)
    return Reference(
        aggregator_cls(projector=projector)(j), weighting_cls(projector=projector)(j @ j.T)
    )


def assert_matches_torchjd(
    name: str,
    grads: Tensor,
    reference: Callable[[Tensor], Reference],
    *,
    params: dict[str, Any] | None = None,
    rtol: float,
    atol: float,
    atol_per_norm: bool = False,
) -> None:
    """Strategy ``name`` at K = ``grads.shape[0]`` slots against ``reference`` slot by slot.

    All rows are active. Ours must give the reference's update and, where it has weights,
    the same coefficients, reported as their magnitudes normalised to Σ = T (uniform where
    they are all zero); where it has none, coefficients that give the update, reported
    weights that sum to T. ``atol_per_norm``: the update's ``atol`` is relative to the
    largest gradient norm of the slot.
    """
    combined, weights, coeff = run_gradient(name, grads, params=params)
    num_tasks = grads.shape[1]
    for k in range(grads.shape[0]):
        j = grads[k]
        update, w = reference(j)
        size = float(j.norm(dim=1).max()) if atol_per_norm else 1.0
        if w is None:
            total = torch.tensor(float(num_tasks), dtype=j.dtype)
            torch.testing.assert_close(weights[k].sum(), total)
        if update is None:
            assert (combined[k] == 0).all(), combined[k]
            continue
        torch.testing.assert_close(combined[k], update, rtol=rtol, atol=atol * size)
        if w is None:
            torch.testing.assert_close(coeff[k] @ j, update, rtol=rtol, atol=atol * size)
            continue
        torch.testing.assert_close(coeff[k], w, rtol=rtol, atol=atol)
        total = w.abs().sum()
        expected = w.abs() / total * num_tasks if total > 0 else torch.ones_like(w)
        torch.testing.assert_close(weights[k], expected, rtol=rtol, atol=atol)


def assert_inactive_tasks_match_torchjd(
    name: str, num_slots: int, update: Callable[[Tensor], Tensor], *, mean_over_active: bool
) -> None:
    """`with_inactive_tasks` through ``name``: torchjd's ``update`` on all four rows (the
    inactive ones zero), times 4 / (active rows) where ours averages over the active rows
    and torchjd over all; inactive tasks get weight and coefficient 0."""
    grads, scale = with_inactive_tasks(num_slots)
    combined, weights, coeff = run_gradient(name, grads, scale)
    for k in range(num_slots):
        factor = 4 / int((scale[k] > 0).sum()) if mean_over_active else 1.0
        expected = update(grads[k]) * factor
        torch.testing.assert_close(combined[k], expected, rtol=1e-8, atol=1e-10)
        assert (weights[k][scale[k] == 0] == 0).all(), weights[k]
        assert (coeff[k][scale[k] == 0] == 0).all(), coeff[k]


def assert_one_active_task_is_used_as_is(name: str) -> None:
    """One slot, task 0 inactive: the update is task 1's gradient, the weights (0, 1)."""
    grads = torch.tensor([[[0.0, 0.0], [3.0, -4.0]]])
    combined, weights, _ = run_gradient(name, grads, torch.tensor([[0.0, 1.0]]))
    torch.testing.assert_close(combined, torch.tensor([[3.0, -4.0]]))
    assert weights.tolist() == [[0.0, 1.0]]


def assert_non_finite_stays_in_its_slot(name: str, clean_update: list[float]) -> None:
    """A NaN in slot 0 gives a non-finite update there, without raising; slot 1 (the unit
    vectors of R²) gives ``clean_update``."""
    grads = torch.tensor([[[1.0, float("nan")], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    combined, _, _ = run_gradient(name, grads)
    assert not torch.isfinite(combined[0]).all()
    torch.testing.assert_close(combined[1], torch.tensor(clean_update))
