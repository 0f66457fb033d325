"""Soft parameter sharing: the L2 pull between columns."""

from __future__ import annotations

import pytest
import torch

from mtl_core.architectures import SoftSharingModel, build_model, pairwise_squared_distance
from mtl_core.errors import ConfigError
from tests.utils.networks import cnn_parts, mlp_parts


def soft(pull: float = 0.5, num_tasks: int = 2) -> SoftSharingModel:
    torch.manual_seed(0)
    model = build_model("soft", {"pull": pull}, mlp_parts(out_dims=(1,) * num_tasks))
    assert isinstance(model, SoftSharingModel)
    return model


def make_columns_equal(model: SoftSharingModel) -> None:
    with torch.no_grad():
        for column in model.columns[1:]:
            for p, p0 in zip(column.parameters(), model.columns[0].parameters(), strict=True):
                p.copy_(p0)


def test_nothing_is_shared() -> None:
    model = soft()
    assert model.shared_parameters() == []
    assert model.last_shared_parameters() == []
    assert model(torch.randn(3, 8)).representation is None


def test_regularization_is_zero_for_equal_columns() -> None:
    model = soft(num_tasks=3)
    make_columns_equal(model)
    assert float(model.regularization().detach()) == 0.0


def test_regularization_is_pull_times_pairwise_squared_distance() -> None:
    model = soft(pull=0.5, num_tasks=3)
    cols = [list(c.parameters()) for c in model.columns]
    expected = sum(
        sum(((a - b) ** 2).sum() for a, b in zip(cols[i], cols[j], strict=True))
        for i in range(3)
        for j in range(i + 1, 3)
    )
    torch.testing.assert_close(model.regularization(), 0.5 * expected)


def test_regularization_grows_with_distance() -> None:
    model = soft()
    make_columns_equal(model)
    direction = [torch.randn_like(p) for p in model.columns[1].parameters()]
    values = []
    for step in (0.1, 0.2, 0.4):
        make_columns_equal(model)
        with torch.no_grad():
            for p, d in zip(model.columns[1].parameters(), direction, strict=True):
                p.add_(step * d)
        values.append(float(model.regularization().detach()))
    assert 0 < values[0] < values[1] < values[2]
    # Squared distance: doubling the offset multiplies it by 4.
    assert values[1] == pytest.approx(4 * values[0], rel=1e-4)


def test_gradient_of_regularization_pulls_columns_together() -> None:
    model = soft(pull=1.0)
    before = float(model.distance().detach())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(5):
        optimizer.zero_grad()
        model.regularization().backward()
        optimizer.step()
    assert float(model.distance().detach()) < 0.5 * before
    # Heads are not pulled: their gradient from the regularizer is absent.
    assert all(p.grad is None for p in model.heads.parameters())


def test_zero_pull_gives_zero_regularization() -> None:
    assert float(soft(pull=0.0).regularization().detach()) == 0.0


def test_negative_pull_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="pull"):
        build_model("soft", {"pull": -1.0}, mlp_parts())


def test_single_column_has_zero_distance() -> None:
    model = build_model("soft", None, cnn_parts(out_dims=(1,)))
    assert float(model.regularization().detach()) == 0.0


def test_pairwise_squared_distance_on_plain_tensors() -> None:
    a = [torch.tensor([0.0, 0.0]), torch.tensor(1.0)]
    b = [torch.tensor([3.0, 4.0]), torch.tensor(1.0)]
    assert float(pairwise_squared_distance([a, b])) == 25.0
    with pytest.raises(ValueError, match="no parameters"):
        pairwise_squared_distance([[], []])
