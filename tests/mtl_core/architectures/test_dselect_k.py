"""DSelect-k: shared experts, a per-example k-sparse binary-code gate per task."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch

from mtl_core.architectures import build_model
from mtl_core.architectures.dselect_k import (
    DSelectKGate,
    DSelectKModel,
    binary_codes,
    selector_penalty,
    smooth_step,
)
from mtl_core.errors import ConfigError
from mtl_core.trainer import train_trial
from tests.mtl_core.batched._helpers import (
    STRATEGY_KINDS,
    architecture_configs,
    assert_batched_equals_alone,
)
from tests.utils.networks import cnn_parts, mlp_parts, toy_regression


def dselect(kind: str = "mlp", **params: Any) -> DSelectKModel:
    torch.manual_seed(0)
    parts = mlp_parts(out_dims=(2, 1, 1)) if kind == "mlp" else cnn_parts(out_dims=(2, 1, 1))
    model = build_model("dselect_k", params, parts)
    assert isinstance(model, DSelectKModel)
    return model


def saturate(gate: DSelectKGate, experts: list[int], scale: float = 10.0) -> None:
    """Point selector i at ``experts[i]``: z_i = ±scale·γ by the bits of that expert, any x."""
    codes = binary_codes(8)  # the first rows of every wider code table
    with torch.no_grad():
        gate.z.weight.zero_()
        bits = torch.stack([codes[e, : gate.bits] for e in experts]).float()
        gate.z.bias.copy_(((2 * bits - 1) * scale * gate.gamma).reshape(-1))


@pytest.mark.parametrize("gamma", [0.5, 1.0, 3.0])
def test_smooth_step_values_and_continuity(gamma: float) -> None:
    half = torch.tensor([-gamma / 2, 0.0, gamma / 2], dtype=torch.float64)
    assert smooth_step(half, gamma).tolist() == pytest.approx([0.0, 0.5, 1.0], abs=1e-12)
    assert smooth_step(torch.tensor([-10 * gamma, 10 * gamma]), gamma).tolist() == [0.0, 1.0]
    # Continuous (and flat) where the cubic meets 0 and 1; increasing in between.
    eps = 1e-4 * gamma
    for edge in (-gamma / 2, gamma / 2):
        sides = smooth_step(torch.tensor([edge - eps, edge + eps], dtype=torch.float64), gamma)
        assert abs(float(sides[1] - sides[0])) < 1e-6
    t = torch.linspace(-gamma, gamma, 201, dtype=torch.float64, requires_grad=True)
    values = smooth_step(t, gamma)
    assert bool((values.diff() >= 0).all())
    (slope,) = torch.autograd.grad(values.sum(), t)
    assert float(slope.abs().max()) == pytest.approx(1.5 / gamma, rel=1e-3)
    assert float(slope[t.detach().abs() >= gamma / 2].abs().max()) < 1e-9


def test_binary_codes_are_the_bits_of_each_expert() -> None:
    assert binary_codes(2).tolist() == [[False], [True]]
    assert binary_codes(5).int().tolist() == [
        [0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]
    ]  # fmt: skip


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_power_of_two_gates_are_distributions_over_experts(kind: str) -> None:
    model = dselect(kind, num_experts=4, k=3)
    x, _ = toy_regression(kind, batch=6)
    weights = model.gate_weights(x)
    assert weights.shape == (3, 6, 4)
    assert bool((weights >= 0).all())
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 6))


def test_five_experts_weights_sum_to_the_reachable_mass_one_once_converged() -> None:
    model = dselect(num_experts=5, k=2, gamma=2.0)
    x, _ = toy_regression("mlp", batch=6)
    weights = model.gate_weights(x)
    assert weights.shape == (3, 6, 5)
    assert bool((weights >= 0).all())
    assert bool((weights.sum(-1) <= 1 + 1e-6).all())
    gate = model.gates[0]
    assert isinstance(gate, DSelectKGate)
    # Codes 5..7 are unreachable: the weights sum to the mixture of the reachable masses.
    reachable = gate.selectors(x).sum(-1)  # [B, k]
    mixing = torch.softmax(gate.alpha(x), dim=-1)
    torch.testing.assert_close(weights[0].sum(-1), (mixing * reachable).sum(-1))
    saturate(gate, [4, 1])
    torch.testing.assert_close(model.gate_weights(x)[0].sum(-1), torch.ones(6))


@pytest.mark.parametrize(("num_experts", "chosen"), [(4, [3, 0]), (5, [4, 2]), (8, [6, 6])])
def test_saturated_selectors_are_one_hot(num_experts: int, chosen: list[int]) -> None:
    model = dselect(num_experts=num_experts, k=2)
    gate = model.gates[1]
    assert isinstance(gate, DSelectKGate)
    saturate(gate, chosen)
    x, _ = toy_regression("mlp", batch=5)
    selectors = gate.selectors(x)
    expected = torch.zeros(5, 2, num_experts)
    for i, e in enumerate(chosen):
        expected[:, i, e] = 1.0
    assert torch.equal(selectors, expected)
    weights, _ = gate(x)
    assert int((weights[0] != 0).sum()) == len(set(chosen))  # at most k experts


def test_z_starts_in_the_smooth_region() -> None:
    model = dselect(gamma=2.0, z_init=0.05)
    for gate in model.gates:
        assert isinstance(gate, DSelectKGate)
        for p in gate.z.parameters():
            assert 0.05 < float(p.detach().abs().max()) <= 0.1


def test_each_task_reaches_every_expert_and_only_its_own_gate() -> None:
    model = dselect()
    x, _ = toy_regression("mlp", batch=5)
    model(x).outputs[1].sum().backward()
    assert all(p.grad is not None for p in model.experts.parameters())
    assert all(p.grad is not None for p in model.gates[1].parameters())
    assert all(p.grad is None for p in model.gates[0].parameters())
    assert {id(p) for p in model.shared_parameters()} == {id(p) for p in model.experts.parameters()}
    expected = [p for e in model.experts for p in list(e.children())[-1].parameters()]
    assert model.last_shared_parameters() == expected


def test_selector_penalty_formula() -> None:
    r = torch.tensor([[[0.5, 0.25, 0.25, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0]]])  # [1, 2, 5]
    entropy = -(0.5 * math.log(0.5 + 1e-6) + 2 * 0.25 * math.log(0.25 + 1e-6))
    entropy_one_hot = -math.log(1 + 1e-6)
    expected = 0.1 * (entropy + entropy_one_hot)
    assert float(selector_penalty(r, 0.1, power_of_two=True)) == pytest.approx(expected)
    # Not a power of two: 1/Σr − 1 per selector, 0 when all the mass is reachable.
    half = r * torch.tensor([[[1.0], [0.5]]])
    assert float(selector_penalty(half, 0.0, power_of_two=False)) == pytest.approx(1.0)
    assert float(selector_penalty(r, 0.0, power_of_two=False)) == 0.0
    # A selector on an unreachable code is penalised, finitely.
    assert math.isfinite(float(selector_penalty(torch.zeros(1, 1, 5), 0.0, power_of_two=False)))


def test_regularization_is_the_last_training_forwards_penalty_read_once() -> None:
    x, _ = toy_regression("mlp", batch=5)
    plain = dselect(num_experts=4)
    plain(x)
    assert float(plain.regularization()) == 0.0  # E = 4, no entropy weight
    model = dselect(num_experts=5, entropy_weight=0.3)
    model(x)
    expected = sum(
        selector_penalty(gate(x.flatten(1))[1], 0.3, power_of_two=False) for gate in model.gates
    )
    reg = model.regularization()
    assert reg.requires_grad
    torch.testing.assert_close(reg, expected)
    assert float(model.regularization()) == 0.0  # read once
    model(x)
    copy.deepcopy(model)  # the traced graph is not copied along
    model.eval()
    model(x)
    assert float(model.regularization()) == 0.0  # a training loss only


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"num_experts": 4, "k": 5}, r"parameter 'k' .*at most num_experts \(4\)"),
        ({"k": 0}, "'k'"),
        ({"num_experts": 1}, "'num_experts'"),
        ({"gamma": 0}, "'gamma'"),
        ({"entropy_weight": -1}, "'entropy_weight'"),
    ],
)
def test_bad_parameters_are_one_line_config_errors(params: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        build_model("dselect_k", params, mlp_parts())
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("params", [{}, {"num_experts": 5, "k": 3, "entropy_weight": 0.1}])
@pytest.mark.parametrize("strategy", STRATEGY_KINDS)
def test_batched_equals_alone(strategy: str, params: dict[str, Any]) -> None:
    assert_batched_equals_alone(architecture_configs("dselect_k", strategy, params))


def test_the_penalty_reaches_training() -> None:
    plain = train_trial(architecture_configs("dselect_k", "fixed", {})[-1])
    penalised = train_trial(
        architecture_configs("dselect_k", "fixed", {"entropy_weight": 10.0})[-1]
    )
    assert plain.history[-1].train_loss != penalised.history[-1].train_loss
