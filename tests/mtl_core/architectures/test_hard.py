"""Hard parameter sharing: shared depth, per-task copies, gradient isolation of heads."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtl_core.architectures import HardSharingModel, build_model
from mtl_core.errors import ConfigError
from tests.utils.networks import cnn_parts, mlp_parts, toy_regression


def hard(shared_depth: int | None, kind: str = "mlp") -> HardSharingModel:
    torch.manual_seed(0)
    parts = mlp_parts() if kind == "mlp" else cnn_parts()
    model = build_model("hard", {"shared_depth": shared_depth}, parts)
    assert isinstance(model, HardSharingModel)
    return model


def test_default_shares_the_whole_trunk() -> None:
    model = hard(None)
    assert len(model.trunk) == 3
    assert all(not list(tower.children()) for tower in model.towers)
    assert model.shared_parameters() == list(model.trunk.parameters())
    # The last shared block is the third Linear block.
    assert model.last_shared_parameters() == list(model.trunk[2].parameters())


def test_shared_depth_one_copies_the_later_blocks_per_task() -> None:
    model = hard(1)
    assert len(model.trunk) == 1
    assert [len(list(tower.children())) for tower in model.towers] == [2, 2]
    tower0, tower1 = (list(t.parameters()) for t in model.towers)
    assert {id(p) for p in tower0}.isdisjoint({id(p) for p in tower1})
    assert [p.shape for p in tower0] == [p.shape for p in tower1]
    assert not torch.equal(tower0[0], tower1[0])  # fresh initialisation per task
    shared = {id(p) for p in model.shared_parameters()}
    assert shared == {id(p) for p in model.trunk.parameters()}
    assert shared.isdisjoint({id(p) for p in tower0 + tower1})


def test_representation_is_the_last_shared_block_output() -> None:
    model = hard(2)
    x, _ = toy_regression("mlp", batch=5)
    out = model(x)
    assert out.representation is not None
    torch.testing.assert_close(out.representation, model.trunk(x))
    # The representation carries the graph: heads are reached through it (MGDA-UB).
    grad = torch.autograd.grad(out.outputs[0].sum(), out.representation)[0]
    assert grad.shape == out.representation.shape and grad.abs().sum() > 0


def test_shared_depth_zero_shares_nothing() -> None:
    model = hard(0)
    x, _ = toy_regression("mlp", batch=5)
    assert model(x).representation is None
    assert model.shared_parameters() == []
    assert model.last_shared_parameters() == []


def test_last_shared_skips_blocks_without_parameters() -> None:
    parts = mlp_parts()

    def blocks_with_tail() -> list[nn.Module]:
        return [*parts.make_blocks(), nn.Dropout(0.0)]

    model = build_model(
        "hard",
        None,
        type(parts)(blocks_with_tail, parts.representation_dim, parts.make_head, 8, 2),
    )
    assert isinstance(model, HardSharingModel)
    assert model.last_shared_parameters() == list(model.trunk[2].parameters())


@pytest.mark.parametrize("depth", [4, 10])
def test_shared_depth_beyond_the_trunk_is_a_config_error(depth: int) -> None:
    with pytest.raises(ConfigError, match=rf"shared_depth must be in 0\.\.3.*got {depth}"):
        build_model("hard", {"shared_depth": depth}, mlp_parts())


def test_negative_shared_depth_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="shared_depth"):
        build_model("hard", {"shared_depth": -1}, mlp_parts())


@pytest.mark.parametrize("shared_depth", [None, 1])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_task0_loss_does_not_reach_task1_parameters(shared_depth: int | None, kind: str) -> None:
    model = hard(shared_depth, kind)
    x, targets = toy_regression(kind, batch=4)
    out = model(x)
    nn.functional.mse_loss(out.outputs[0], targets[0]).backward()
    for p in list(model.heads[1].parameters()) + list(model.towers[1].parameters()):
        assert p.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.heads[0].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.shared_parameters())
