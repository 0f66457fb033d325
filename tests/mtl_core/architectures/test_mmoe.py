"""MMoE: experts shared, one softmax gate per task."""

from __future__ import annotations

import pytest
import torch

from mtl_core.architectures import MMoEModel, build_model
from mtl_core.errors import ConfigError
from tests.utils.networks import cnn_parts, mlp_parts, toy_regression


def mmoe(kind: str = "mlp", num_experts: int = 3) -> MMoEModel:
    torch.manual_seed(0)
    parts = mlp_parts(out_dims=(2, 1, 1)) if kind == "mlp" else cnn_parts(out_dims=(2, 1, 1))
    model = build_model("mmoe", {"num_experts": num_experts}, parts)
    assert isinstance(model, MMoEModel)
    return model


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_gates_are_distributions_over_experts(kind: str) -> None:
    model = mmoe(kind)
    x, _ = toy_regression(kind, batch=6)
    weights = model.gate_weights(x)
    assert weights.shape == (3, 6, 3)
    assert bool((weights >= 0).all())
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 6))


def test_output_is_the_gated_mixture_of_experts() -> None:
    model = mmoe()
    x, _ = toy_regression("mlp", batch=5)
    weights = model.gate_weights(x)
    experts = torch.stack([e(x) for e in model.experts], dim=1)  # [B, E, D]
    out = model(x)
    assert out.representation is None
    for t, head in enumerate(model.heads):
        mixed = (weights[t].unsqueeze(-1) * experts).sum(1)
        torch.testing.assert_close(out.outputs[t], head(mixed))


def test_experts_are_shared_and_distinct() -> None:
    model = mmoe(num_experts=4)
    assert len(model.experts) == 4
    assert {id(p) for p in model.shared_parameters()} == {id(p) for p in model.experts.parameters()}
    first, second = (list(e.parameters()) for e in model.experts[:2])
    assert not torch.equal(first[0], second[0])
    task = {id(p) for p in model.task_parameters()}
    assert {id(p) for p in model.gates.parameters()} <= task


def test_last_shared_is_the_last_block_of_every_expert() -> None:
    model = mmoe(num_experts=2)
    expected = [p for e in model.experts for p in list(e.children())[-1].parameters()]
    assert model.last_shared_parameters() == expected


def test_every_task_loss_reaches_every_expert_and_only_its_own_gate() -> None:
    model = mmoe()
    x, _ = toy_regression("mlp", batch=5)
    model(x).outputs[1].sum().backward()
    assert all(p.grad is not None for e in model.experts for p in next(e.children()).parameters())
    assert all(p.grad is not None for p in model.gates[1].parameters())
    assert all(p.grad is None for p in model.gates[0].parameters())
    assert all(p.grad is None for p in model.heads[2].parameters())


def test_zero_experts_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="num_experts"):
        build_model("mmoe", {"num_experts": 0}, mlp_parts())
