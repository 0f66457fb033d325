"""FORUM: its QP against an independent solver, the lower-level gap against the closed form, a
step on the trainer's look-ahead against plain autograd, a problem with a known answer,
inactive tasks and free slots, and batched = alone."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from torch import Tensor

from mtl_core.batched import BatchedRun
from mtl_core.errors import ConfigError
from mtl_core.weighting import StepInputs, build_strategy, parse_strategy_config
from mtl_core.weighting.forum import FORUM, forum_weights
from tests.mtl_core.batched._helpers import assert_batched_equals_alone, synthetic_config
from tests.mtl_core.weighting._meta import (
    corrupted_auxiliary_run,
    plain_gradient,
    plain_losses,
    sgd_step,
    softmax_jacobian,
    trainer_step,
)
from tests.mtl_core.weighting._toy import linear_look_ahead, linear_problem, make_ctx, make_strategy


def _forum(num_tasks: int, params: Sequence[dict[str, float]]) -> FORUM:
    strategy = build_strategy("forum", len(params), num_tasks)
    for slot, slot_params in enumerate(params):
        config = parse_strategy_config("forum", slot_params)
        strategy.reset_slot(slot, config, make_ctx(num_tasks, slot))
    assert isinstance(strategy, FORUM)
    return strategy


def reference_qp(gram: np.ndarray, pi: np.ndarray, c: float, active: np.ndarray) -> np.ndarray:
    """FORUM's QP by SLSQP (an independent solver): min wᵀGw − c w_T over w >= 0,
    Σ_{t active} w_t = 1, w_t = 0 for inactive t, w_T >= Σ_t π_t w_t."""
    t = pi.shape[0]
    corner = np.zeros(t + 1)
    corner[t] = c
    start = np.append(active / active.sum(), max(float(pi @ (active / active.sum())), 0.0) + 1.0)
    result = minimize(
        lambda w: w @ gram @ w - c * w[t],
        start,
        jac=lambda w: 2 * gram @ w - corner,
        bounds=[(0.0, None if a else 0.0) for a in active] + [(0.0, None)],
        constraints=[
            {"type": "eq", "fun": lambda w: w[:t] @ active - 1.0},
            {"type": "ineq", "fun": lambda w: w[t] - pi @ (w[:t] * active)},
        ],
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    return np.asarray(result.x)


def _qp_case(num_tasks: int, kind: str, seed: int) -> tuple[np.ndarray, ...]:
    """(Gram of ĝ_1..ĝ_T, g_q; π; c; active) as FORUM forms them, from random vectors."""
    rng = np.random.default_rng(seed)
    unit = rng.standard_normal((num_tasks, 8))
    if kind == "identical":
        unit[:] = unit[0]
    if kind == "near":  # nearly identical: an ill-conditioned, nearly flat problem
        unit = unit[0] + 1e-4 * unit
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    q = rng.standard_normal(8) * 10.0 ** rng.uniform(-2, 2)
    if kind == "against":
        q = -unit.sum(axis=0) + 0.1 * q / np.linalg.norm(q)
    if kind == "in_span":  # a singular Gram matrix: g_q a combination of the ĝ_t
        q = rng.standard_normal(num_tasks) @ unit
    if kind == "vanishing":  # validation gradients that vanish: ĝ_t = 0
        unit[1:] = 0.0
    active = np.ones(num_tasks, dtype=bool)
    if kind == "inactive":
        active[0] = False
        unit[0] = 0.0
    phi = rng.uniform(0.05, 1.0)
    rows = np.vstack([unit, q])
    sq = float(q @ q)
    pi = np.where(active, phi - unit @ q / (sq + 1e-8), 0.0)
    return rows @ rows.T, pi, np.array(phi * (sq + 1e-8)), active


@pytest.mark.parametrize("num_tasks", [2, 3, 5, 8])
def test_qp_matches_an_independent_solver(num_tasks: int, caplog: pytest.LogCaptureFixture) -> None:
    cases = [
        _qp_case(num_tasks, kind, seed)
        for kind in ("random", "against", "near", "identical", "inactive", "in_span", "vanishing")
        for seed in range(6)
    ]
    gram, pi, c, active = (np.stack(parts) for parts in zip(*cases, strict=True))
    solved = forum_weights(
        torch.from_numpy(gram), torch.from_numpy(pi), torch.from_numpy(c), torch.from_numpy(active)
    ).numpy()
    for k, (g, p, ck, a) in enumerate(cases):
        w, ref = solved[k], reference_qp(g, p, float(ck), a)
        assert (w >= 0).all() and (w[:-1][~a] == 0).all()
        assert w[:-1].sum() == pytest.approx(1.0, abs=1e-9)
        assert w[-1] >= p @ w[:-1] - 1e-9
        # SLSQP meets its constraints to ~1e-8 only: compare with the nearest feasible point.
        tasks = np.maximum(ref[:-1], 0.0) * a
        tasks /= tasks.sum()
        feasible = np.append(tasks, max(ref[-1], float(p @ tasks), 0.0))
        value_w, value_ref = (v @ g @ v - float(ck) * v[-1] for v in (w, feasible))
        assert value_w <= value_ref + 1e-9 * (1.0 + abs(value_ref)), (k, w, ref)
        if k < 12:  # "random" and "against": strictly convex, one solution
            np.testing.assert_allclose(w, ref, atol=1e-5 * (1.0 + np.abs(ref).max()))
    assert not caplog.records  # every problem met its KKT conditions


def test_without_a_lower_level_gradient_the_task_part_is_the_min_norm_point() -> None:
    """g_q = 0 leaves w_T unbounded (−c w_T alone) but moot: the task weights are then the
    min-norm point of the ĝ_t and w_T = max(Σ π_t w_t, 0)."""
    unit = np.array([[1.0, 0.0], [-0.6, 0.8], [0.0, 1.0]])
    rows = np.vstack([unit, np.zeros(2)])
    pi = np.array([0.1, 0.1, 0.1])
    w = forum_weights(
        torch.from_numpy(rows @ rows.T)[None],
        torch.from_numpy(pi)[None],
        torch.tensor([1e-9], dtype=torch.float64),
        torch.ones(1, 3, dtype=torch.bool),
    )[0].numpy()
    # The hull's min-norm point is the middle of the first two, (0.2, 0.4), which the third
    # does not undercut (⟨(0, 1), (0.2, 0.4)⟩ = 0.4 >= ‖(0.2, 0.4)‖² = 0.2).
    expected = np.array([0.5, 0.5, 0.0])
    np.testing.assert_allclose(w[:3], expected, atol=1e-9)
    assert w[3] == pytest.approx(0.1)


def test_lower_level_gap_matches_the_closed_form_on_linear_losses() -> None:
    """L_t = c_t + g_t·θ: ∇_θ f = d = Σ_t z_t s_t g_t everywhere, so n inner steps give
    L_t(θ) − L_t(θ_n) = n · inner_lr · g_t·d and g_q's α-part is J (s ⊙ that). A slot whose f
    starts above 1e5 takes no inner step (LibMTL's guard) and has no gap."""
    gen = torch.Generator().manual_seed(0)
    train, val = torch.randn(3, 3, 4, generator=gen), torch.randn(3, 3, 4, generator=gen)
    scale = torch.tensor([[1.0, 0.5, 2.0], [0.3, 1.0, 0.0], [1.0, 1.0, 1.0]])
    offsets = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0], [1e6, 1e6, 1e6]])
    params = [
        {"inner_lr": 0.1, "inner_steps": 1},
        {"inner_lr": 0.02, "inner_steps": 3},
        {"inner_lr": 0.1, "inner_steps": 2},
    ]
    strategy = _forum(3, params)
    strategy.logits.copy_(torch.randn(3, 3, generator=gen))
    theta, losses = linear_problem(train, offsets)
    look = linear_look_ahead(theta, train, offsets, val, torch.ones(3, 3))
    inputs = StepInputs(losses, scale, [theta], torch.ones(3, dtype=torch.bool), look_ahead=look)
    active = scale > 0
    z = torch.softmax(strategy.logits.masked_fill(~active, -math.inf), dim=-1)
    f, q_alpha, q_theta = strategy._lower_level(inputs, look, z)
    torch.testing.assert_close(f, (z * scale * losses).sum(-1))
    for k, slot in enumerate(params):
        d = torch.einsum("t,tp->p", z[k] * scale[k], train[k])
        torch.testing.assert_close(q_theta[k], d)
        steps = slot["inner_steps"] if k < 2 else 0
        gap = scale[k] * steps * slot["inner_lr"] * (train[k] @ d)
        expected = softmax_jacobian(z[k]) @ gap
        torch.testing.assert_close(q_alpha[k].float(), expected, rtol=1e-4, atol=1e-5)


def test_a_step_on_the_trainers_look_ahead_matches_plain_autograd() -> None:
    """Everything by hand on a copy of the model (the QP by SLSQP): g_q from two inner SGD
    steps, the unit validation gradients, π, c, w; then λ = w (epoch 0), ν = max(λ·π, 0),
    the model's gradient Σ λ_t ĝ_t + ν ∇_θ f, and α's first Adam step on ν g_q's α-part."""
    inner_lr, phi, lr = 0.2, 0.3, 0.01
    config = synthetic_config(
        strategy="forum",
        strategy_params={"inner_lr": inner_lr, "inner_steps": 2, "phi": phi, "lr": lr},
        weights={"classification": 2.0},
        seed=5,
    )
    step = trainer_step(config)
    strategy = step.run.strategy.members["forum"]
    assert isinstance(strategy, FORUM)
    objective, weights = strategy.objective(step.inputs)
    update = torch.cat(
        [g.reshape(-1) for g in torch.autograd.grad(objective.sum(), step.parameters)]
    )

    scale, z = torch.tensor([1.0, 2.0]), torch.full((2,), 0.5)
    losses = torch.stack(plain_losses(step.model, step.train))
    q_theta = plain_gradient((z * scale * losses).sum(), step.model)
    inner = copy.deepcopy(step.model)
    for _ in range(2):
        f = (z * scale * torch.stack(plain_losses(inner, step.train))).sum()
        assert f < 1e5
        grad = plain_gradient(f, inner)
        sgd_step(inner, inner_lr * grad)
    ahead = torch.stack(plain_losses(inner, step.train))
    q_alpha = softmax_jacobian(z) @ (scale * (losses - ahead)).detach()
    g_val = torch.stack([plain_gradient(v, step.model) for v in plain_losses(step.model, step.val)])
    unit = (g_val / g_val.norm(dim=-1, keepdim=True)).double()
    q = torch.cat([q_alpha, q_theta]).double()
    sq = float(q @ q)
    pi = (phi - unit @ q[2:] / (sq + 1e-8)).numpy()
    rows = torch.cat([torch.cat([torch.zeros(2, 2, dtype=torch.float64), unit], dim=1), q[None]])
    w = reference_qp((rows @ rows.T).numpy(), pi, phi * (sq + 1e-8), np.ones(2, dtype=bool))
    lambdas = torch.from_numpy(w[:2])
    nu = max(float(lambdas @ torch.from_numpy(pi)), 0.0)
    assert nu > 0  # the lower level takes part in this step

    torch.testing.assert_close(strategy.lambdas[0].double(), lambdas, rtol=0, atol=1e-5)
    expected = (lambdas @ unit + nu * q[2:]).float()
    torch.testing.assert_close(update, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
    alpha_grad = nu * q_alpha
    adam_step = lr * alpha_grad / (alpha_grad.abs() + 1e-8)
    torch.testing.assert_close(strategy.logits[0], -adam_step, rtol=1e-4, atol=1e-7)
    assert weights.tolist() == [[1.0, 1.0]]  # the weights this step trained with: z at α = 0


def test_lambda_is_a_running_average_at_the_rate_of_the_epoch() -> None:
    """λ ← λ + (e + 1)^{-3/4} (w − λ): λ = w after the first step, then the second epoch's
    step moves it 2^{-3/4} of the way to that step's w (α held still by a tiny lr)."""
    gen = torch.Generator().manual_seed(5)
    val = torch.randn(1, 3, 4, generator=gen)

    def step(strategy: FORUM, train: Tensor) -> Tensor:
        theta, losses = linear_problem(train, torch.ones(1, 3))
        look = linear_look_ahead(theta, train, torch.ones(1, 3), val, torch.ones(1, 3))
        inputs = StepInputs(losses, torch.ones(1, 3), [theta], torch.ones(1, dtype=torch.bool))
        inputs.look_ahead = look
        strategy.objective(inputs)
        return strategy.lambdas[0].clone()

    first, second = torch.randn(1, 3, 4, generator=gen), torch.randn(1, 3, 4, generator=gen)
    running = _forum(3, [{"lr": 1e-12}])
    after_first = step(running, first)
    running.on_epoch_end(torch.ones(1, dtype=torch.bool), torch.ones(1, 3))
    after_second = step(running, second)
    w_second = step(_forum(3, [{"lr": 1e-12}]), second)
    assert not torch.allclose(after_first, w_second, atol=1e-3)
    expected = after_first + 2.0**-0.75 * (w_second - after_first)
    torch.testing.assert_close(after_second, expected, rtol=1e-5, atol=1e-6)


def test_an_auxiliary_task_with_flipped_training_labels_loses_its_weight() -> None:
    weights = corrupted_auxiliary_run("forum", {"lr": 0.05}, 60)
    assert weights[2] < 0.2 and weights[0] > 1.0 and weights[1] > 1.0, weights


def test_inactive_task_and_free_slot() -> None:
    """An inactive task (weight 0) keeps weight 0, λ 0, logit 0 and its head untouched; the
    free slot's λ, logits and epoch count do not move."""
    config = synthetic_config(strategy="forum", weights={"classification": 0.0}, seed=3)
    run = BatchedRun([config], num_slots=2)
    strategy = run.strategy.members["forum"]
    assert isinstance(strategy, FORUM)
    heads = {n: p[0].clone() for n, p in run.params.items() if n.startswith("heads.1.")}
    reports = run.run_epoch()
    assert reports[0].report.weights == {"regression": 1.0, "classification": 0.0}
    assert strategy.lambdas[0].tolist() == [1.0, 0.0]
    assert (strategy.logits[:, 1] == 0).all()
    assert (strategy.lambdas[1] == 0).all() and (strategy.logits[1] == 0).all()
    assert strategy.epochs.tolist() == [1, 0]
    for name, before in heads.items():
        torch.testing.assert_close(run.params[name][0], before, rtol=0, atol=0)


@pytest.mark.parametrize("num_slots", [2, 4])
def test_a_trial_meta_learns_the_same_in_a_batch_as_alone(num_slots: int) -> None:
    """Each slot runs its own number of inner steps inside the batch's longest loop."""
    configs = [
        synthetic_config(
            strategy="forum",
            seed=seed,
            strategy_params={"inner_steps": 1 + seed % 3, "lr": 1e-2, "phi": 0.05 * seed},
            optimizer="sgd" if num_slots == 2 else "adam",
        )
        for seed in range(3, 3 + num_slots)
    ]
    assert_batched_equals_alone(configs)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"inner_steps": 0}, "inner_steps"),
        ({"inner_steps": 11}, "inner_steps"),
        ({"phi": 0.0}, "phi"),
        ({"inner_lr": -0.1}, "inner_lr"),
        ({"lr": 0}, "lr"),
    ],
)
def test_bad_hyper_parameters_are_rejected(params: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError, match=f"'{field}'"):
        make_strategy("forum", params, 2)


@pytest.mark.parametrize("last", ["forum", "moml"])
def test_forum_and_moml_trials_share_a_batch(last: str) -> None:
    """Meta-learned strategies share a batch: each slot takes its own strategy's step (the
    batch's last slot equals its trial alone)."""
    configs = {
        "moml": synthetic_config(strategy="moml", seed=3, strategy_params={"lr": 1e-2}),
        "forum": synthetic_config(strategy="forum", seed=4, strategy_params={"inner_steps": 2}),
    }
    first = "moml" if last == "forum" else "forum"
    assert_batched_equals_alone([configs[first], configs[last]])
