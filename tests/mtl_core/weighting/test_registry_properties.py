"""Properties every registered strategy keeps, on random inputs at K = 1 and K = 4.

Walks `STRATEGIES`, so a new strategy is held to the same conventions the moment it is
registered (see `mtl_core.weighting._base`): finite outputs, weights >= 0 summing to the
number of active tasks, no gradient for an inactive task, K rows equal to K one-trial runs
with the same seeds, and free slots that draw nothing and change no other slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor

from mtl_core.context import TaskContext
from mtl_core.weighting import (
    STRATEGIES,
    GradientWeighting,
    LossWeighting,
    StepInputs,
    WeightingStrategy,
    parse_strategy_config,
)
from mtl_core.weighting.pcgrad import project_conflicting
from tests.mtl_core.weighting._toy import (
    linear_look_ahead,
    linear_problem,
    make_ctx,
    with_other_batches,
)

#: Every registered strategy with its defaults.
REGISTERED: list[tuple[str, dict[str, Any]]] = [(name, {}) for name in STRATEGIES.names()]
#: ... plus the variants that change its maths.
VARIANTS = [
    *REGISTERED,
    ("mgda", {"normalization": "l2"}),
    ("mgda", {"normalization": "loss+"}),
    ("cagrad", {"c": 0.0}),
    ("cagrad", {"c": 0.9, "rescale": 0}),
    ("dwa", {"tau": 0.5}),
    ("loss_balance", {"gamma": 0.0, "beta": 0.5}),
    ("gradnorm", {"alpha": 0.0}),
    ("famo", {"lr": 0.1, "weight_decay": 0.0}),
    ("upgrad", {"reg_eps": 1e-2}),
    ("dualproj", {"reg_eps": 1e-2}),
    ("gradvac", {"beta": 1.0}),
    ("stch", {"mu": 0.01, "warmup_epochs": 1}),
    ("stch", {"warmup_epochs": 0}),
    ("pbi", {"theta": 0.0}),
    ("pbi", {"theta": 5.0}),
    ("aligned_mtl", {"scale_mode": "median"}),
    ("aligned_mtl", {"scale_mode": "rmse"}),
    ("pcd", {"tau": 0.3, "beta": 0.5}),
    ("graddrop", {"leak": 0.5}),
    ("moco", {"beta": 1.0, "gamma": 1.0, "rho": 0.5}),
    ("nash_mtl", {"max_norm": 0.0, "update_weights_every": 2}),
    ("fairgrad", {"alpha": 0.0}),
    ("fairgrad", {"alpha": 5.0}),
    ("excess_mtl", {"robust_step_size": 1.0, "warmup_steps": 1}),
    ("cr_mogm", {"alpha": 0.5, "base": "gradvac"}),
    ("cr_mogm", {"alpha": 0.0, "base": "nash_mtl"}),
    ("db_mtl", {"beta": 0.0}),
    ("db_mtl", {"beta": 0.5, "beta_sigma": 1.0}),
]
KINDS = ("random", "conflicting", "near_parallel", "zero", "identical", "opposite")
NUM_PARAMS = 6
STEPS = 3
PROPERTY_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass(frozen=True)
class Case:
    """One random problem: K trials of T tasks, gradients of one kind, a seed for the rest."""

    num_slots: int
    num_tasks: int
    kind: str
    seed: int


def _cases(num_slots: list[int]) -> st.SearchStrategy[Case]:
    return st.builds(
        Case,
        num_slots=st.sampled_from(num_slots),
        num_tasks=st.sampled_from([2, 3, 5]),
        kind=st.sampled_from(KINDS),
        seed=st.integers(0, 2**31 - 1),
    )


def _gradients(case: Case, gen: torch.Generator) -> Tensor:
    """``[K, T, P]`` task gradients of ``case.kind``, task norms spread over 10^±2."""
    k, t, p = case.num_slots, case.num_tasks, NUM_PARAMS
    base = torch.randn(k, 1, p, generator=gen)
    magnitude = 10.0 ** (4 * torch.rand(k, t, 1, generator=gen) - 2)
    if case.kind == "random":
        grads = torch.randn(k, t, p, generator=gen) * magnitude
    elif case.kind == "conflicting":
        # Every task points against task 0: g_t·g_0 < 0 for t > 0.
        raw = torch.randn(k, t, p, generator=gen)
        along = (raw * base).sum(-1, keepdim=True).abs() / (base * base).sum(-1, keepdim=True)
        grads = torch.cat([base, raw[:, 1:] - (along[:, 1:] + 0.5) * base], dim=1) * magnitude
    elif case.kind == "near_parallel":
        noise = 1e-3 * torch.randn(k, t, p, generator=gen)
        grads = (base + noise * base.norm(dim=-1, keepdim=True)) * magnitude
    elif case.kind == "zero":
        grads = torch.randn(k, t, p, generator=gen) * magnitude
        zero = torch.rand(k, t, 1, generator=gen) < 0.5
        zero[0] = True  # one trial whose gradients all vanish
        grads = torch.where(zero, torch.zeros_like(grads), grads)
    elif case.kind == "identical":
        grads = base.expand(k, t, p).clone()
    else:  # opposite: alternating ±g
        sign = torch.tensor([(-1.0) ** i for i in range(t)]).reshape(1, t, 1)
        grads = base * sign * magnitude
    return grads


@dataclass
class Step:
    """One step's inputs for K trials: the linear problem's θ, losses with graph, scale, and
    (for meta-learned strategies) validation losses c'_t + v_t·θ (``val``, ``val_offsets``)."""

    theta: Tensor
    grads: Tensor
    inputs: StepInputs
    val: Tensor
    val_offsets: Tensor

    @classmethod
    def of(
        cls,
        grads: Tensor,
        offsets: Tensor,
        scale: Tensor,
        occupied: Tensor,
        val: Tensor,
        val_offsets: Tensor,
    ) -> Step:
        theta, losses = linear_problem(grads, offsets)
        look = linear_look_ahead(theta, grads, offsets, val, val_offsets)
        inputs = StepInputs(losses, scale, [theta], occupied, look_ahead=look)
        return cls(theta, grads, inputs, val, val_offsets)

    def row(self, k: int) -> Step:
        """Trial ``k``'s step as a K = 1 problem of its own (its own θ)."""
        rows = slice(k, k + 1)
        return Step.of(
            self.grads[rows],
            self.inputs.losses.detach()[rows],
            self.inputs.scale[rows],
            self.inputs.occupied[rows],
            self.val[rows],
            self.val_offsets[rows],
        )


def _steps(case: Case, occupied: Tensor) -> list[Step]:
    """``STEPS`` steps of random losses in 1e-4..1e4, some tasks inactive (scale 0)."""
    gen = torch.Generator().manual_seed(case.seed)
    grads = _gradients(case, gen)
    k, t = case.num_slots, case.num_tasks
    steps = []
    # The validation problem has its own generator: the other draws stay as they were.
    val_gen = torch.Generator().manual_seed(case.seed + 1)
    val = _gradients(case, val_gen)
    for _ in range(STEPS):
        values = 10.0 ** (8 * torch.rand(k, t, generator=gen) - 4)
        scale = 0.5 + 1.5 * torch.rand(k, t, generator=gen)
        scale = torch.where(torch.rand(k, t, generator=gen) < 0.3, torch.zeros_like(scale), scale)
        val_offsets = 10.0 ** (4 * torch.rand(k, t, generator=val_gen) - 2)
        steps.append(Step.of(grads, values, scale, occupied, val, val_offsets))
    return steps


def _build(
    name: str, params: dict[str, Any] | list[dict[str, Any]], case: Case, seeds: list[int]
) -> WeightingStrategy:
    """Strategy ``name`` with one slot per seed; ``params`` for all slots, or one per slot."""
    cls = STRATEGIES.get(name)
    per_slot = params if isinstance(params, list) else [params] * len(seeds)
    strategy = cls(len(seeds), case.num_tasks, torch.device("cpu"))
    for slot, (seed, slot_params) in enumerate(zip(seeds, per_slot, strict=True)):
        config = parse_strategy_config(name, slot_params)
        strategy.reset_slot(slot, config, make_ctx(case.num_tasks, seed))
    return strategy


def _run(strategy: WeightingStrategy, step: Step) -> tuple[Tensor, Tensor, list[Tensor]]:
    """(objective ``[K]`` or combined ``[K, P]``, weights ``[K, T]``, gradients).

    Loss-based: the gradients of the objective w.r.t. the losses, θ and the strategy's own
    tensors; gradient methods have none (their update is ``combined`` itself).
    """
    inputs = step.inputs
    if isinstance(strategy, LossWeighting):
        objective, weights = strategy.objective(inputs)
        grads = torch.autograd.grad(
            objective.sum(),
            [inputs.losses, step.theta, *strategy.parameters()],
            allow_unused=True,
            materialize_grads=True,
        )
        return objective.detach(), weights, list(grads)
    assert isinstance(strategy, GradientWeighting)
    scaled = step.grads * inputs.scale.unsqueeze(-1)  # the gradients of scale_t · L_t
    combined, weights = strategy.combine(scaled, with_other_batches(strategy, scaled, inputs))
    return combined, weights, []


def _epoch_end(strategy: WeightingStrategy, step: Step) -> None:
    strategy.on_epoch_end(step.inputs.occupied, step.inputs.losses.detach())


def _close(actual: Tensor, expected: Tensor) -> None:
    atol = 1e-6 * (1.0 + float(expected.abs().max())) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=atol)


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=lambda v: str(v))
@PROPERTY_SETTINGS
@given(case=_cases([1, 4]))
def test_outputs_finite_and_weights_sum_to_the_active_tasks(
    name: str, params: dict[str, Any], case: Case
) -> None:
    seeds = [case.seed + k for k in range(case.num_slots)]
    strategy = _build(name, params, case, seeds)
    for step in _steps(case, torch.ones(case.num_slots, dtype=torch.bool)):
        scale = step.inputs.scale
        active = scale > 0
        value, weights, grads = _run(strategy, step)
        assert weights.shape == (case.num_slots, case.num_tasks)
        assert not weights.requires_grad
        assert torch.isfinite(value).all(), (value, weights)
        assert torch.isfinite(weights).all(), weights
        assert (weights >= 0).all(), weights
        assert (weights[~active] == 0).all(), weights
        n_active = active.sum(-1).to(weights.dtype)
        torch.testing.assert_close(weights.sum(-1), n_active, rtol=1e-4, atol=1e-5)
        for g in grads:
            assert torch.isfinite(g).all(), g
        if isinstance(strategy, GradientWeighting):
            assert value.shape == (case.num_slots, NUM_PARAMS)
            # One active task: its own gradient of scale_t · L_t, as is (or a positive
            # multiple of it, where the strategy says so).
            single = active.sum(-1) == 1
            own = (step.grads * scale.unsqueeze(-1)).sum(1)
            if not strategy.single_task_as_is:
                norms = (own * own).sum(-1)
                factor = (value * own).sum(-1) / norms.clamp_min(torch.finfo(own.dtype).tiny)
                assert (factor[single & (norms > 0)] > 0).all(), factor
                own = own * factor.unsqueeze(-1)
            _close(value[single], own[single])
        else:
            assert value.shape == (case.num_slots,)
            # An inactive task adds no gradient: ∂objective/∂L_t = 0 where scale_t = 0.
            assert (grads[0][~active] == 0).all(), grads[0]
        _epoch_end(strategy, step)


@pytest.mark.parametrize("name", STRATEGIES.names())
@PROPERTY_SETTINGS
@given(case=_cases([4]), free=st.sampled_from([(), (1,), (0, 3)]), data=st.data())
def test_k_rows_equal_k_single_trials_and_free_slots_stay_out(
    name: str, case: Case, free: tuple[int, ...], data: st.DataObject
) -> None:
    """Each slot may hold its own hyper-parameters, as the trials of one batch do."""
    choices = [params for variant, params in VARIANTS if variant == name]
    per_slot = data.draw(st.lists(st.sampled_from(choices), min_size=4, max_size=4))
    seeds = [case.seed + 7 * k for k in range(case.num_slots)]
    batched = _build(name, per_slot, case, seeds)
    singles = [
        _build(name, [params], case, [seed]) for params, seed in zip(per_slot, seeds, strict=True)
    ]
    occupied = torch.ones(case.num_slots, dtype=torch.bool)
    held: dict[int, TaskContext | None] = {}
    states: dict[int, Tensor] = {}
    for step_index, step in enumerate(_steps(case, occupied)):
        if step_index == 1:  # the trials in ``free`` leave after one step
            held = {slot: batched.contexts[slot] for slot in free}
            states = {slot: ctx.generator.get_state() for slot, ctx in held.items() if ctx}
            for slot in free:
                batched.release_slot(slot)
                occupied[slot] = False
        step.inputs.occupied = occupied.clone()
        value, weights, grads = _run(batched, step)
        for k, single in enumerate(singles):
            if not occupied[k]:
                continue
            one = step.row(k)
            one_value, one_weights, one_grads = _run(single, one)
            _close(value[k : k + 1], one_value)
            _close(weights[k : k + 1], one_weights)
            for g, one_g in zip(grads, one_grads, strict=True):
                _close(g[k : k + 1], one_g)
            _epoch_end(single, one)
        _epoch_end(batched, step)
    for slot, state in states.items():
        ctx = held[slot]
        # A released slot draws nothing from its trial's generator.
        assert ctx is not None and torch.equal(ctx.generator.get_state(), state)


@PROPERTY_SETTINGS
@given(case=_cases([1, 4]), order_seed=st.integers(0, 2**31 - 1))
def test_pcgrad_each_projection_removes_the_conflict_it_handles(
    case: Case, order_seed: int
) -> None:
    """After projecting g_i off g_j (original), g_i'·g_j >= 0 up to rounding."""
    grads = _gradients(case, torch.Generator().manual_seed(case.seed))
    k, t = case.num_slots, case.num_tasks
    gen = torch.Generator().manual_seed(order_seed)
    perms = torch.stack(
        [torch.stack([torch.randperm(t, generator=gen) for _ in range(t)]) for _ in range(k)]
    )
    norms = grads.norm(dim=-1)
    for i in range(t):
        others = [perms[:, i, pos] for pos in range(t)]
        handled = torch.full((k, t), i, dtype=torch.long)  # i itself is skipped: "not yet"
        for pos in range(t):
            handled[:, pos] = others[pos]
            orders = torch.arange(t).repeat(k, t, 1)
            orders[:, i] = handled
            projected = project_conflicting(grads, orders)[:, i]
            j = others[pos]
            g_j = grads[torch.arange(k), j]
            dot = (projected * g_j).sum(-1)
            bound = -1e-6 * norms[:, i] * norms[torch.arange(k), j]
            mask = j != i
            assert (dot[mask] >= bound[mask]).all(), (i, j, dot, bound)
