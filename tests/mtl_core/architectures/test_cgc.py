"""CGC: PLE with one level, under its own name and config."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mtl_core.architectures import build_model, make_architecture
from mtl_core.architectures.cgc import CGC
from mtl_core.architectures.ple import PLEModel
from mtl_core.errors import ConfigError
from tests.mtl_core.batched._helpers import (
    STRATEGY_KINDS,
    architecture_configs,
    assert_batched_equals_alone,
)
from tests.utils.networks import cnn_parts, mlp_parts, toy_regression

PARAMS = {"shared_experts": 2, "experts_per_task": 3}


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_cgc_is_ple_with_one_level(kind: str) -> None:
    parts = mlp_parts(out_dims=(2, 1, 1)) if kind == "mlp" else cnn_parts(out_dims=(2, 1, 1))
    torch.manual_seed(0)
    cgc = build_model("cgc", PARAMS, parts)
    torch.manual_seed(0)
    ple = build_model("ple", {**PARAMS, "levels": 1}, parts)
    assert isinstance(cgc, PLEModel)
    assert len(cgc.levels) == 1
    assert [n for n, _ in cgc.named_parameters()] == [n for n, _ in ple.named_parameters()]
    x, _ = toy_regression(kind, batch=4)
    for a, b in zip(cgc(x).outputs, ple(x).outputs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_shared_parameters_are_the_shared_experts() -> None:
    torch.manual_seed(0)
    model = build_model("cgc", PARAMS, mlp_parts())
    assert isinstance(model, PLEModel)
    (level,) = model.levels
    assert level.shared_gate is None
    assert {id(p) for p in model.shared_parameters()} == {
        id(p) for p in level.shared_experts.parameters()
    }
    x, _ = toy_regression("mlp", batch=4)
    model(x).outputs[0].sum().backward()
    assert all(p.grad is not None for p in level.shared_experts.parameters())
    assert all(p.grad is None for p in level.task_experts[1].parameters())
    assert all(p.grad is None for p in level.task_gates[1].parameters())


def test_cgc_has_no_levels_parameter_and_needs_no_input_shape() -> None:
    with pytest.raises(ConfigError, match="no parameter 'levels'"):
        make_architecture("cgc", {"levels": 2})
    architecture = make_architecture("cgc", None)
    assert isinstance(architecture, CGC)
    assert architecture.settings().levels == 1
    assert architecture.shares_parameters() and not architecture.exposes_representation()
    build_model("cgc", None, dataclasses.replace(mlp_parts(), input_shape=None))


@pytest.mark.parametrize("strategy", STRATEGY_KINDS)
def test_batched_equals_alone(strategy: str) -> None:
    assert_batched_equals_alone(architecture_configs("cgc", strategy, PARAMS))
