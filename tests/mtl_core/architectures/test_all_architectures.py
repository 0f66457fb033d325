"""Contract tests walking every registered architecture on an MLP and a CNN."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from mtl_core.architectures import (
    ARCHITECTURES,
    ModelOutput,
    MultiTaskModel,
    NetworkParts,
    build_model,
    make_architecture,
)
from mtl_core.errors import ConfigError
from tests.utils.networks import cnn_parts, mlp_parts, reached_by_task, toy_regression

PARTS: dict[str, Callable[..., NetworkParts]] = {"mlp": mlp_parts, "cnn": cnn_parts}


def build(name: str, kind: str, out_dims: tuple[int, ...] = (1, 1)) -> MultiTaskModel:
    torch.manual_seed(0)
    return build_model(name, None, PARTS[kind](out_dims=out_dims))


@pytest.mark.parametrize("kind", sorted(PARTS))
@pytest.mark.parametrize("name", ARCHITECTURES.names())
def test_output_shapes_per_task(name: str, kind: str) -> None:
    model = build(name, kind, out_dims=(3, 1, 5))
    x, _ = toy_regression(kind, batch=4)
    out = model(x)
    assert isinstance(out, ModelOutput)
    assert [tuple(o.shape) for o in out.outputs] == [(4, 3), (4, 1), (4, 5)]
    if out.representation is not None:
        assert out.representation.shape[0] == 4


@pytest.mark.parametrize("kind", sorted(PARTS))
@pytest.mark.parametrize("name", ARCHITECTURES.names())
def test_shared_and_task_parameters_partition_the_model(name: str, kind: str) -> None:
    model = build(name, kind)
    shared = [id(p) for p in model.shared_parameters()]
    task = [id(p) for p in model.task_parameters()]
    everything = [id(p) for p in model.parameters()]
    assert len(shared) == len(set(shared))
    assert len(task) == len(set(task))
    assert not set(shared) & set(task)
    assert sorted(shared + task) == sorted(everything)
    assert {id(p) for p in model.last_shared_parameters()} <= set(shared)
    assert bool(model.last_shared_parameters()) == bool(shared)


@pytest.mark.parametrize("kind", sorted(PARTS))
@pytest.mark.parametrize("name", ARCHITECTURES.names())
def test_shared_parameters_are_those_every_task_reaches(name: str, kind: str) -> None:
    """What gradient methods combine is exactly what autograd connects to every task's output
    (in training mode, three tasks)."""
    model = build(name, kind, out_dims=(1, 2, 1)).train()
    x, _ = toy_regression(kind, batch=4)
    reached_by_all = set.intersection(*reached_by_task(model, model(x).outputs))
    assert {id(p) for p in model.shared_parameters()} == reached_by_all


@pytest.mark.parametrize("kind", sorted(PARTS))
@pytest.mark.parametrize("name", ARCHITECTURES.names())
def test_two_task_toy_regression_loss_decreases(name: str, kind: str) -> None:
    model = build(name, kind)
    x, targets = toy_regression(kind, batch=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def total_loss() -> torch.Tensor:
        out = model(x)
        losses = [nn.functional.mse_loss(o, y) for o, y in zip(out.outputs, targets, strict=True)]
        return torch.stack(losses).sum() + model.regularization()

    with torch.no_grad():
        initial = float(total_loss())
    for _ in range(100):
        optimizer.zero_grad()
        total_loss().backward()
        optimizer.step()
    with torch.no_grad():
        final = float(total_loss())
    assert final < 0.5 * initial, f"{name}/{kind}: loss {initial:.4f} -> {final:.4f}"


@pytest.mark.parametrize("name", ARCHITECTURES.names())
def test_regularization_is_a_finite_non_negative_scalar(name: str) -> None:
    reg = build(name, "mlp").regularization().detach()
    assert reg.shape == ()
    assert torch.isfinite(reg) and float(reg) >= 0


@pytest.mark.parametrize("kind", sorted(PARTS))
@pytest.mark.parametrize("name", ARCHITECTURES.names())
def test_forward_runs_under_functional_call_and_vmap(name: str, kind: str) -> None:
    """K copies of the parameters, one batched forward: what a vmapped trainer does."""
    model = build(name, kind)
    x, _ = toy_regression(kind, batch=4)
    params = {k: v.detach() for k, v in model.named_parameters()}
    k = 3
    stacked = {n: torch.stack([p + 0.01 * i for i in range(k)]) for n, p in params.items()}

    def forward(p: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return torch.func.functional_call(model, p, (x,)).outputs

    batched = torch.func.vmap(forward)(stacked)
    for i in range(k):
        single = forward({n: v[i] for n, v in stacked.items()})
        for got, expected in zip(batched, single, strict=True):
            torch.testing.assert_close(got[i], expected)


@pytest.mark.parametrize("name", ARCHITECTURES.names())
def test_unknown_parameter_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match="no parameter 'nonsense'"):
        build_model(name, {"nonsense": 1}, mlp_parts())


@pytest.mark.parametrize("name", ["hard", "soft", "mmoe"])
def test_make_blocks_that_reuses_modules_is_rejected(name: str) -> None:
    good = mlp_parts()
    blocks = good.make_blocks()
    reused = type(good)(
        make_blocks=lambda: blocks,
        representation_dim=good.representation_dim,
        make_head=good.make_head,
        input_dim=good.input_dim,
        num_tasks=good.num_tasks,
    )
    params = {"shared_depth": 1} if name == "hard" else None
    with pytest.raises(ConfigError, match="make_blocks"):
        build_model(name, params, reused)


@pytest.mark.parametrize("name", ARCHITECTURES.names())
def test_the_check_before_building_leaves_the_initialisation_alone(name: str) -> None:
    """`build_model` runs `check_parts` (which may build throwaway blocks) and then `build`:
    the model is what `build` alone gives from the same seed, so a recorded trial rebuilds."""
    parts = cnn_parts()
    torch.manual_seed(0)
    checked = build_model(name, None, parts)
    torch.manual_seed(0)
    built = make_architecture(name, None).build(parts)
    for (key, got), (_, expected) in zip(
        checked.state_dict().items(), built.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(got, expected, rtol=0, atol=0, msg=key)
