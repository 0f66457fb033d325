"""MTAN: a shared trunk, one sigmoid attention mask per task and stage."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import mtl_core.architectures.mtan  # noqa: F401  (registers "mtan")
from mtl_core.architectures import HardSharingModel, NetworkParts, build_model, make_architecture
from mtl_core.architectures.mtan import MTANModel
from mtl_core.errors import ConfigError
from tests.mtl_core.batched._helpers import (
    STRATEGY_KINDS,
    architecture_configs,
    assert_batched_equals_alone,
)
from tests.utils.networks import cnn_parts, mlp_parts, reached_by_task, toy_regression


def conv1d_parts(out_dims: tuple[int, ...] = (1, 1)) -> NetworkParts:
    """A trunk on ``[B, 2, 10]`` whose first two stages are [C, L] (Conv1d attention)."""

    def make_blocks() -> list[nn.Module]:
        return [
            nn.Sequential(nn.Conv1d(2, 3, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv1d(3, 4, 3), nn.ReLU()),
            nn.Sequential(nn.Flatten(), nn.Linear(4 * 8, 6), nn.ReLU()),
        ]

    return NetworkParts(
        make_blocks=make_blocks,
        representation_dim=6,
        make_head=lambda t: nn.Linear(6, out_dims[t]),
        input_dim=20,
        num_tasks=len(out_dims),
        input_shape=(2, 10),
    )


PARTS: dict[str, Callable[..., NetworkParts]] = {
    "mlp": mlp_parts,
    "cnn": cnn_parts,
    "conv1d": conv1d_parts,
}
STAGES: dict[str, list[tuple[int, ...]]] = {
    "mlp": [(16,), (16,), (16,)],
    "cnn": [(4, 16, 16), (288,), (32,)],
    "conv1d": [(3, 10), (4, 8), (6,)],
}


def inputs(kind: str, batch: int = 5) -> torch.Tensor:
    if kind == "conv1d":
        return torch.randn(batch, 2, 10, generator=torch.Generator().manual_seed(1))
    return toy_regression(kind, batch=batch)[0]


def mtan(kind: str = "mlp", params: dict[str, Any] | None = None, tasks: int = 3) -> MTANModel:
    torch.manual_seed(0)
    model = build_model("mtan", params, PARTS[kind](out_dims=(1,) * tasks))
    assert isinstance(model, MTANModel)
    return model


@pytest.mark.parametrize("kind", sorted(PARTS))
def test_masks_are_in_open_unit_interval_with_the_stage_shape(kind: str) -> None:
    model = mtan(kind)
    masks = model.attention_masks(inputs(kind))
    assert len(masks) == 3
    for task_masks in masks:
        assert [tuple(m.shape) for m in task_masks] == [(5, *s) for s in STAGES[kind]]
        for mask in task_masks:
            assert bool((mask > 0).all()) and bool((mask < 1).all())
    # Each task has its own (differently initialised) attention.
    assert not torch.equal(masks[0][0], masks[1][0])


def test_forward_follows_the_attention_recursion() -> None:
    """a_s = sigmoid(A_s(concat(f_s, block_s(a_{s-1})))) ⊙ f_s, with q_1 = f_1."""
    model = mtan(tasks=2)
    x = inputs("mlp")
    shared = []
    h = x
    for block in model.trunk:
        h = block(h)
        shared.append(h)
    out = model(x)
    assert out.representation is None
    for t, head in enumerate(model.heads):
        modules = list(model.attention[t].children())
        attended = x
        for s, (block, module) in enumerate(zip(model.trunk, modules, strict=True)):
            query = block(attended)
            mask = torch.sigmoid(module(torch.cat([shared[s], query], dim=1)))
            attended = mask * shared[s]
        torch.testing.assert_close(out.outputs[t], head(attended))


@pytest.mark.parametrize("kind", sorted(PARTS))
def test_masks_of_one_equal_hard_sharing_on_the_same_parameters(kind: str) -> None:
    model = mtan(kind, tasks=2)
    with torch.no_grad():
        for modules in model.attention:
            for module in modules.children():
                last = list(module.children())[-1]
                assert isinstance(last, nn.Linear | nn.Conv1d | nn.Conv2d)
                assert last.bias is not None
                last.weight.zero_()
                last.bias.fill_(100.0)  # sigmoid(100) is exactly 1 in float32
    hard = build_model("hard", None, PARTS[kind](out_dims=(1, 1)))
    assert isinstance(hard, HardSharingModel)
    hard.trunk.load_state_dict(model.trunk.state_dict())
    hard.heads.load_state_dict(model.heads.state_dict())
    x = inputs(kind)
    for got, expected in zip(model(x).outputs, hard(x).outputs, strict=True):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("width", [None, 5])
def test_attention_width(width: int | None) -> None:
    model = mtan("cnn", {"attention_width": width})
    for modules in model.attention:
        first, _, last = next(modules.children()).children()
        assert isinstance(first, nn.Conv2d) and isinstance(last, nn.Conv2d)
        assert (first.in_channels, first.out_channels) == (8, width or 4)
        assert (last.in_channels, last.out_channels) == (width or 4, 4)
        assert first.kernel_size == (1, 1)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_shared_parameters_are_those_every_task_reaches(kind: str) -> None:
    model = mtan(kind)
    x = inputs(kind)
    reached = reached_by_task(model, model(x).outputs)
    every = set.intersection(*reached)
    assert every == {id(p) for p in model.shared_parameters()}
    assert every == {id(p) for p in model.trunk.parameters()}
    # Task 0 reaches its own attention and head, none of task 1's.
    assert {id(p) for p in model.attention[0].parameters()} <= reached[0]
    assert not {id(p) for p in model.attention[1].parameters()} & reached[0]
    assert not {id(p) for p in model.heads[1].parameters()} & reached[0]
    assert model.last_shared_parameters() == list(model.trunk[2].parameters())


def test_missing_input_shape_is_a_one_line_config_error() -> None:
    parts = dataclasses.replace(mlp_parts(), input_shape=None)
    with pytest.raises(ConfigError, match=r"'mtan'.*input_shape") as info:
        build_model("mtan", None, parts)
    assert "\n" not in str(info.value)


def test_a_four_dimensional_stage_is_rejected_by_check_parts() -> None:
    def make_blocks() -> list[nn.Module]:
        return [nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), nn.Unflatten(1, (1, 2))]

    parts = NetworkParts(make_blocks, 32, lambda t: nn.Linear(32, 1), 36, 2, (1, 6, 6))
    with pytest.raises(ConfigError, match=r"trunk block 2 .*\(1, 2, 4, 4\)") as info:
        make_architecture("mtan", None).check_parts(parts)
    assert "\n" not in str(info.value)


def test_an_empty_trunk_is_a_config_error() -> None:
    parts = dataclasses.replace(mlp_parts(), make_blocks=list)
    with pytest.raises(ConfigError, match="at least one trunk block"):
        build_model("mtan", None, parts)


def test_zero_attention_width_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="attention_width"):
        build_model("mtan", {"attention_width": 0}, mlp_parts())


@pytest.mark.parametrize("params", [{}, {"attention_width": 8}])
@pytest.mark.parametrize("strategy", STRATEGY_KINDS)
def test_batched_equals_alone(strategy: str, params: dict[str, Any]) -> None:
    assert_batched_equals_alone(architecture_configs("mtan", strategy, params))
