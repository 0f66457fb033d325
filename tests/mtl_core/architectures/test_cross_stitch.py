"""Cross-stitch: one column per task, columns mixed by a learnable α after every block."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import mtl_core.architectures.cross_stitch  # noqa: F401  (registers "cross_stitch")
from mtl_core.architectures import NetworkParts, SoftSharingModel, build_model
from mtl_core.architectures.cross_stitch import CrossStitchModel, CrossStitchUnit, stitch_init
from mtl_core.errors import ConfigError
from tests.mtl_core.batched._helpers import (
    STRATEGY_KINDS,
    architecture_configs,
    assert_batched_equals_alone,
)
from tests.utils.networks import cnn_parts, mlp_parts, reached_by_task, toy_regression

PARTS: dict[str, Callable[..., NetworkParts]] = {"mlp": mlp_parts, "cnn": cnn_parts}


def cross_stitch(kind: str = "mlp", self_weight: float = 0.9, tasks: int = 3) -> CrossStitchModel:
    torch.manual_seed(0)
    parts = PARTS[kind](out_dims=(1,) * tasks)
    model = build_model("cross_stitch", {"self_weight": self_weight}, parts)
    assert isinstance(model, CrossStitchModel)
    return model


@pytest.mark.parametrize(("tasks", "off"), [(2, 0.1), (3, 0.05), (5, 0.025)])
def test_stitch_rows_at_init(tasks: int, off: float) -> None:
    model = cross_stitch(tasks=tasks)
    assert len(model.stitches) == 3
    expected = torch.full((tasks, tasks), off).fill_diagonal_(0.9)
    for stitch in model.stitches:
        assert isinstance(stitch, CrossStitchUnit)
        torch.testing.assert_close(stitch.alpha.detach(), expected)
        torch.testing.assert_close(stitch.alpha.detach().sum(1), torch.ones(tasks))


def test_single_task_stitch_is_the_identity() -> None:
    assert torch.equal(stitch_init(1, 0.9), torch.ones(1, 1))
    with pytest.raises(ValueError, match="self_weight"):
        stitch_init(2, 0.0)


@pytest.mark.parametrize("kind", sorted(PARTS))
def test_self_weight_one_equals_independent_columns(kind: str) -> None:
    model = cross_stitch(kind, self_weight=1.0)
    soft = build_model("soft", None, PARTS[kind](out_dims=(1, 1, 1)))
    assert isinstance(soft, SoftSharingModel)
    soft.columns.load_state_dict(model.columns.state_dict())
    soft.heads.load_state_dict(model.heads.state_dict())
    x, _ = toy_regression(kind, batch=4)
    out = model(x)
    assert out.representation is None
    for got, expected in zip(out.outputs, soft(x).outputs, strict=True):
        torch.testing.assert_close(got, expected)


def units(model: CrossStitchModel) -> list[CrossStitchUnit]:
    stitches = [stitch for stitch in model.stitches if isinstance(stitch, CrossStitchUnit)]
    assert len(stitches) == len(model.stitches)
    return stitches


def test_forward_mixes_the_columns_after_every_block() -> None:
    """x_s^t = Σ_u α_s[t, u] · block_s^u(x_{s-1}^u), on a random α."""
    model = cross_stitch(tasks=2)
    with torch.no_grad():
        for stitch in units(model):
            stitch.alpha.copy_(torch.rand(2, 2))
    x, _ = toy_regression("mlp", batch=4)
    features = [x, x]
    columns = [list(column.children()) for column in model.columns]
    for s, stitch in enumerate(units(model)):
        stage = [column[s](f) for column, f in zip(columns, features, strict=True)]
        alpha = stitch.alpha
        features = [alpha[t, 0] * stage[0] + alpha[t, 1] * stage[1] for t in range(2)]
    for got, head, f in zip(model(x).outputs, model.heads, features, strict=True):
        torch.testing.assert_close(got, head(f))


def test_alpha_receives_gradient() -> None:
    model = cross_stitch(tasks=2)
    x, targets = toy_regression("mlp", batch=8)
    out = model(x)
    loss = sum(
        torch.nn.functional.mse_loss(o, y) for o, y in zip(out.outputs, targets, strict=True)
    )
    assert isinstance(loss, torch.Tensor)
    loss.backward()
    for stitch in units(model):
        grad = stitch.alpha.grad
        assert grad is not None
        assert bool((grad != 0).all())


@pytest.mark.parametrize("kind", sorted(PARTS))
def test_shared_parameters_are_those_every_task_reaches(kind: str) -> None:
    model = cross_stitch(kind)
    x, _ = toy_regression(kind, batch=4)
    reached = reached_by_task(model, model(x).outputs)
    every = set.intersection(*reached)
    assert every == {id(p) for p in model.shared_parameters()}
    assert every == {id(p) for p in [*model.columns.parameters(), *model.stitches.parameters()]}
    assert {id(p) for p in model.task_parameters()} == {id(p) for p in model.heads.parameters()}
    assert not {id(p) for p in model.heads[1].parameters()} & reached[0]


def test_last_shared_is_the_last_block_of_every_column() -> None:
    model = cross_stitch(tasks=2)
    expected = [p for column in model.columns for p in list(column.children())[-1].parameters()]
    assert model.last_shared_parameters() == expected


def test_columns_are_distinct() -> None:
    first, second = (list(c.parameters()) for c in cross_stitch(tasks=2).columns)
    assert {id(p) for p in first}.isdisjoint({id(p) for p in second})
    assert not torch.equal(first[0], second[0])


@pytest.mark.parametrize("self_weight", [0.0, -0.1, 1.5])
def test_self_weight_out_of_range_is_a_config_error(self_weight: float) -> None:
    with pytest.raises(ConfigError, match="self_weight"):
        build_model("cross_stitch", {"self_weight": self_weight}, mlp_parts())


def test_make_blocks_that_reuses_modules_is_rejected() -> None:
    good = mlp_parts()
    blocks = good.make_blocks()
    reused = type(good)(lambda: blocks, good.representation_dim, good.make_head, good.input_dim, 2)
    with pytest.raises(ConfigError, match="make_blocks"):
        build_model("cross_stitch", None, reused)


def test_an_empty_trunk_is_a_config_error() -> None:
    parts = type(mlp_parts())(list, 8, mlp_parts().make_head, 8, 2)
    with pytest.raises(ConfigError, match="at least one trunk block"):
        build_model("cross_stitch", None, parts)


@pytest.mark.parametrize("params", [{}, {"self_weight": 0.6}])
@pytest.mark.parametrize("strategy", STRATEGY_KINDS)
def test_batched_equals_alone(strategy: str, params: dict[str, Any]) -> None:
    assert_batched_equals_alone(architecture_configs("cross_stitch", strategy, params))
