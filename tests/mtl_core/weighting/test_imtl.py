"""IMTL (Liu et al. 2021): IMTL-G's part against torchjd's IMTLG, IMTL-L's part and the hybrid
step on a toy model against their formulas."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchjd.aggregation import IMTLG

from mtl_core.production import MultiTaskLoss
from mtl_core.weighting.imtl import IMTL
from mtl_core.weighting.imtl_g import impartial_coefficients
from tests.mtl_core.weighting._toy import (
    GRADIENT_KINDS,
    ToyMTL,
    make_ctx,
    make_grads,
    step_inputs,
    toy_data,
    toy_losses,
)


def _strategy(num_slots: int, num_tasks: int) -> IMTL:
    strategy = IMTL(num_slots, num_tasks, torch.device("cpu"))
    for slot in range(num_slots):
        strategy.reset_slot(slot, IMTL.config_cls(), make_ctx(num_tasks))
    return strategy


@settings(max_examples=40, deadline=None, database=None)
@given(
    num_slots=st.sampled_from([1, 4]),
    num_tasks=st.sampled_from([2, 3, 5]),
    kinds=st.lists(st.sampled_from(["random", "conflicting", "opposite"]), min_size=4, max_size=4),
    exponents=st.lists(st.floats(-4, 4), min_size=4, max_size=4),
    seed=st.integers(0, 2**31 - 1),
)
def test_combination_matches_torchjd_imtlg_on_the_active_rows(
    num_slots: int, num_tasks: int, kinds: list[str], exponents: list[float], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    raw = np.stack(
        [
            make_grads(kinds[k], num_tasks, num_tasks + 3, 10.0 ** exponents[k], seed + k)
            for k in range(num_slots)
        ]
    )
    # Task norms spread over 10^±1 within a trial (IMTL-G is invariant to them in direction).
    raw = raw * 10.0 ** rng.uniform(-1, 1, (num_slots, num_tasks, 1))
    active = rng.random((num_slots, num_tasks)) > 0.3
    active[:, 0] = True
    grads = torch.tensor(raw * active[..., None])
    strategy = _strategy(num_slots, num_tasks)
    combined, weights = strategy.combine(
        grads, step_inputs(torch.ones(num_slots, num_tasks), torch.from_numpy(active))
    )
    for k in range(num_slots):
        # torchjd aggregates the [T_active, P] Jacobian; inactive rows are simply absent.
        expected = IMTLG()(grads[k][torch.from_numpy(active[k])])
        atol = 1e-9 * float(grads[k].norm(dim=-1).max())
        torch.testing.assert_close(combined[k], expected, rtol=1e-7, atol=atol)
    assert (weights[torch.from_numpy(~active)] == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.from_numpy(active.sum(-1)).float())


def test_equal_projections_on_the_unit_gradients() -> None:
    grads = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 3.0, 0.0], [1.0, 1.0, 5.0]]], dtype=torch.float64)
    alpha = impartial_coefficients(grads, torch.ones(1, 3, dtype=torch.bool))
    d = torch.einsum("kt,ktp->kp", alpha, grads)[0]
    units = grads[0] / grads[0].norm(dim=-1, keepdim=True)
    projections = units @ d
    torch.testing.assert_close(projections, projections[:1].expand(3))
    torch.testing.assert_close(alpha.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_paper_closed_form_for_three_tasks() -> None:
    # α_{2:T} = g_1 Uᵀ (D Uᵀ)⁻¹, α_1 = 1 - Σ α_{2:T}, D = g_1 - g_t, U = u_1 - u_t.
    g = torch.randn(3, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    u = g / g.norm(dim=-1, keepdim=True)
    d_rows, u_rows = g[0] - g[1:], u[0] - u[1:]
    rest = g[0] @ u_rows.T @ torch.linalg.inv(d_rows @ u_rows.T)
    expected = torch.cat([1 - rest.sum().unsqueeze(0), rest])
    alpha = impartial_coefficients(g[None], torch.ones(1, 3, dtype=torch.bool))[0]
    torch.testing.assert_close(alpha, expected)


def test_hybrid_step_on_a_toy_model() -> None:
    model = ToyMTL()
    x, targets = toy_data()
    scale = [1.0, 2.0]
    loss = MultiTaskLoss(["a", "b"], "imtl", weights={"a": 1.0, "b": 2.0})
    with torch.no_grad():
        loss.strategy.parameters()[0].copy_(torch.tensor([[0.3, -0.7]]))
    losses, z = toy_losses(model, x, targets)
    loss.backward(losses, model.shared(), model.task_specific(), representation=z)

    # Reference: IMTL-L scaled losses e^s · scale · L, IMTL-G (torchjd) on their gradients.
    s = torch.tensor([0.3, -0.7])
    losses, _ = toy_losses(model, x, targets)
    scaled = [torch.exp(s[t]) * scale[t] * losses[t] for t in range(2)]
    jacobian = torch.stack(
        [
            torch.cat(
                [g.flatten() for g in torch.autograd.grad(v, model.shared(), retain_graph=True)]
            )
            for v in scaled
        ]
    )
    update = IMTLG()(jacobian)
    offset = 0
    for p in model.shared():
        assert p.grad is not None
        torch.testing.assert_close(p.grad.flatten(), update[offset : offset + p.numel()])
        offset += p.numel()
    for t in range(2):
        own = torch.autograd.grad(scaled[t], list(model.heads[t].parameters()), retain_graph=True)
        for p, e in zip(model.heads[t].parameters(), own, strict=True):
            assert p.grad is not None
            torch.testing.assert_close(p.grad, e)
    # ∂/∂s_t of Σ_t scale_t (e^{s_t} L_t - s_t) = scale_t (e^{s_t} L_t - 1).
    (s_param,) = loss.strategy.parameters()
    assert s_param.grad is not None
    expected = torch.stack(
        [scale[t] * (torch.exp(s[t]) * losses[t].detach() - 1) for t in range(2)]
    )
    torch.testing.assert_close(s_param.grad[0], expected)


def test_loss_scales_reach_their_fixed_point() -> None:
    # Trained alone on constant losses, e^{s_t} L_t → 1 (IMTL-L's scale invariance).
    strategy = _strategy(1, 2)
    (s,) = strategy.parameters()
    optimizer = torch.optim.SGD([s], lr=0.1)
    losses = torch.tensor([[4.0, 0.25]])
    for _ in range(300):
        optimizer.zero_grad()
        objective = strategy.parameter_objective(step_inputs(losses))
        (s.grad,) = torch.autograd.grad(objective.sum(), [s])
        optimizer.step()
    torch.testing.assert_close(torch.exp(s.detach()) * losses, torch.ones(1, 2), rtol=1e-3, atol=0)


def test_degenerate_sets_stay_finite() -> None:
    for kind in GRADIENT_KINDS:
        grads = torch.tensor(make_grads(kind, 3, 4, 1.0, 0))[None].float()
        combined, weights = _strategy(1, 3).combine(grads, step_inputs(torch.ones(1, 3)))
        assert torch.isfinite(combined).all() and torch.isfinite(weights).all(), kind
