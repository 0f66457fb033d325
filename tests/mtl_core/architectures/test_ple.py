"""PLE: levels of task and shared experts, shared parameters = what every task's loss reaches."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torch import nn

from mtl_core.architectures import NetworkParts, build_model
from mtl_core.architectures._gates import mix
from mtl_core.architectures.ple import PLEModel, group_sizes, level_reach
from mtl_core.errors import ConfigError
from tests.mtl_core.batched._helpers import (
    STRATEGY_KINDS,
    architecture_configs,
    assert_batched_equals_alone,
)
from tests.utils.networks import cnn_parts, mlp_parts, reached_by_task, toy_regression


def ple(kind: str = "mlp", num_tasks: int = 2, **params: Any) -> PLEModel:
    torch.manual_seed(0)
    out_dims = (1,) * num_tasks
    parts = mlp_parts(out_dims=out_dims) if kind == "mlp" else cnn_parts(out_dims=out_dims)
    model = build_model("ple", params, parts)
    assert isinstance(model, PLEModel)
    return model


def reached_by_every_task(model: nn.Module, outputs: list[torch.Tensor]) -> set[int]:
    """ids of the parameters that every output's gradient reaches (autograd connectivity)."""
    return set.intersection(*reached_by_task(model, outputs))


def level_modules(model: PLEModel) -> list[Any]:
    """The model's `PLELevel` modules (``nn.ModuleList`` items are typed ``Module``; the tests
    read their submodules by name)."""
    return list(model.levels)


@pytest.mark.parametrize(
    ("count", "levels", "sizes"),
    [(3, 1, [3]), (3, 2, [2, 1]), (3, 3, [1, 1, 1]), (7, 3, [3, 2, 2])],
)
def test_blocks_split_into_even_consecutive_groups(
    count: int, levels: int, sizes: list[int]
) -> None:
    assert group_sizes(count, levels) == sizes


@pytest.mark.parametrize("num_tasks", [2, 3])
@pytest.mark.parametrize("levels", [1, 2, 3])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_shared_parameters_are_exactly_those_every_task_reaches(
    kind: str, levels: int, num_tasks: int
) -> None:
    model = ple(kind, num_tasks, levels=levels, shared_experts=2, experts_per_task=2)
    x, _ = toy_regression(kind, batch=4)
    expected = reached_by_every_task(model, model(x).outputs)
    assert {id(p) for p in model.shared_parameters()} == expected
    assert {id(p) for p in model.last_shared_parameters()} <= expected


def test_task_gates_below_the_last_level_are_task_parameters_at_two_levels() -> None:
    # Task t's level-1 mixture feeds only task t's level-2 experts and gate.
    model = ple(levels=2)
    shared = {id(p) for p in model.shared_parameters()}
    first, last = level_modules(model)
    assert not shared & {id(p) for p in first.task_gates.parameters()}
    assert {id(p) for p in first.task_experts.parameters()} <= shared
    assert first.shared_gate is not None
    assert {id(p) for p in first.shared_gate.parameters()} <= shared
    assert not shared & {id(p) for p in last.task_experts.parameters()}
    assert {id(p) for p in last.shared_experts.parameters()} <= shared
    # At three levels the level-1 task gates reach every task through level 2's shared gate.
    assert level_reach(3, 2)[0].task_gates == [frozenset({0, 1})] * 2


def test_experts_are_fresh_copies_of_their_group_of_blocks() -> None:
    model = ple(levels=2, shared_experts=2, experts_per_task=3)
    reference = mlp_parts().make_blocks()
    first, last = level_modules(model)
    for level, blocks in ((first, reference[:2]), (last, reference[2:])):
        assert len(level.shared_experts) == 2
        assert [len(own) for own in level.task_experts] == [3, 3]
        shapes = [tuple(p.shape) for block in blocks for p in block.parameters()]
        for expert in [*level.shared_experts, *(e for own in level.task_experts for e in own)]:
            assert [tuple(p.shape) for p in expert.parameters()] == shapes
    weights = [next(e.parameters()) for e in first.shared_experts]
    assert not torch.equal(weights[0], weights[1])


@pytest.mark.parametrize(("levels", "widths"), [(2, [1296, 288]), (3, [1296, 1024, 288])])
def test_gates_read_the_flattened_output_of_the_group_below(levels: int, widths: list[int]) -> None:
    model = ple("cnn", levels=levels, shared_experts=1, experts_per_task=2)
    for level, width in zip(level_modules(model), widths, strict=True):
        assert [g.in_features for g in level.task_gates] == [width, width]
        assert [g.out_features for g in level.task_gates] == [3, 3]
        assert (level.shared_gate is None) == (level is level_modules(model)[-1])
        if level.shared_gate is not None:
            assert (level.shared_gate.in_features, level.shared_gate.out_features) == (width, 5)


def test_output_is_the_progressive_mixture() -> None:
    model = ple(levels=2, shared_experts=1, experts_per_task=1)
    x, _ = toy_regression("mlp", batch=5)
    first, last = level_modules(model)
    assert first.shared_gate is not None

    def gate(linear: nn.Module, h: torch.Tensor) -> torch.Tensor:
        return torch.softmax(linear(h), dim=-1)

    own = [experts[0](x) for experts in first.task_experts]
    shared = first.shared_experts[0](x)
    h_task = [mix(gate(first.task_gates[t], x), [own[t], shared]) for t in range(2)]
    h_shared = mix(gate(first.shared_gate, x), [*own, shared])
    shared_2 = last.shared_experts[0](h_shared)
    out = model(x)
    assert out.representation is None
    for t in range(2):
        mixed = mix(
            gate(last.task_gates[t], h_task[t]), [last.task_experts[t][0](h_task[t]), shared_2]
        )
        torch.testing.assert_close(out.outputs[t], model.heads[t](mixed))


def test_last_shared_is_the_last_block_of_the_last_levels_shared_experts() -> None:
    model = ple(levels=2, shared_experts=2)
    expected = [p for e in level_modules(model)[-1].shared_experts for p in e[-1].parameters()]
    assert model.last_shared_parameters() == expected


def test_more_levels_than_blocks_is_one_config_error_line() -> None:
    with pytest.raises(ConfigError, match=r"levels must be in 1\.\.3 \(the trunk has 3 blocks\)"):
        build_model("ple", {"levels": 4}, mlp_parts())


def test_several_levels_need_the_input_shape_one_does_not() -> None:
    parts = dataclasses.replace(mlp_parts(), input_shape=None)
    with pytest.raises(ConfigError, match="input_shape"):
        build_model("ple", {"levels": 2}, parts)
    build_model("ple", {"levels": 1}, parts)


def test_make_blocks_that_reuses_modules_is_rejected() -> None:
    good = mlp_parts()
    blocks = good.make_blocks()
    reused = NetworkParts(
        make_blocks=lambda: blocks,
        representation_dim=good.representation_dim,
        make_head=good.make_head,
        input_dim=good.input_dim,
        num_tasks=good.num_tasks,
        input_shape=good.input_shape,
    )
    with pytest.raises(ConfigError, match="make_blocks"):
        build_model("ple", None, reused)


@pytest.mark.parametrize("strategy", STRATEGY_KINDS)
def test_batched_equals_alone(strategy: str) -> None:
    assert_batched_equals_alone(
        architecture_configs(
            "ple", strategy, {"levels": 2, "shared_experts": 2, "experts_per_task": 1}
        )
    )
