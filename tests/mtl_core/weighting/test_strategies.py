"""Contract tests walking every registered strategy on a real 2-task toy model."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from mtl_core.errors import ConfigError
from mtl_core.weighting import (
    STRATEGIES,
    ParameterGroups,
    build_strategy,
    list_strategies,
)
from tests.mtl_core.weighting._toy import ToyMTL, make_ctx, step_ctx, toy_data, toy_losses

VARIANTS: list[tuple[str, dict[str, Any]]] = [(name, {}) for name in list_strategies()] + [
    ("mgda", {"upper_bound": True}),
    ("mgda", {"normalization": "l2"}),
    ("mgda", {"normalization": "loss+"}),
    ("cagrad", {"c": 0.0}),
    ("cagrad", {"rescale": 0}),
]
GRADIENT_METHODS = [n for n in list_strategies() if STRATEGIES.get(n).uses_task_gradients]


def test_all_strategies_registered() -> None:
    expected = {
        "fixed",
        "uncertainty",
        "dwa",
        "gradnorm",
        "loss_balance",
        "rlw",
        "pcgrad",
        "mgda",
        "cagrad",
        "famo",
    }
    assert set(list_strategies()) == expected
    assert set(GRADIENT_METHODS) == {"pcgrad", "mgda", "cagrad"}


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=lambda v: str(v))
def test_strategy_trains_toy_model(name: str, params: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    model = ToyMTL()
    x, targets = toy_data()
    strategy = build_strategy(name, params, make_ctx())
    optimizer = torch.optim.Adam(list(model.parameters()) + strategy.parameters(), lr=1e-2)
    scale = torch.ones(2)
    with torch.no_grad():
        initial = toy_losses(model, x, targets)[0]
    for epoch in range(10):
        epoch_losses = []
        for step in range(10):
            optimizer.zero_grad()
            losses, z = toy_losses(model, x, targets)
            weights = strategy.backward(losses, scale, model.groups(z), step_ctx(epoch, step))
            assert weights.shape == (2,)
            assert not weights.requires_grad
            assert torch.isfinite(weights).all()
            assert weights.sum().item() == pytest.approx(2.0, rel=1e-5)
            assert (weights >= 0).all()
            optimizer.step()
            epoch_losses.append(losses.detach())
        strategy.on_epoch_end(epoch, torch.stack(epoch_losses).mean(dim=0))
    with torch.no_grad():
        final = toy_losses(model, x, targets)[0]
    # MGDA without normalisation favours the small-gradient task (by design), so the bar
    # is "every task improves and the total falls by a quarter", not a race.
    assert (final < initial).all()
    assert final.sum() < 0.75 * initial.sum()


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=lambda v: str(v))
def test_inactive_task_gets_no_weight_and_no_gradient(name: str, params: dict[str, Any]) -> None:
    model = ToyMTL()
    x, targets = toy_data()
    losses, _ = toy_losses(model, x, targets)
    expected_shared = torch.autograd.grad(losses[0], list(model.trunk.parameters()))

    strategy = build_strategy(name, params, make_ctx())
    losses, z = toy_losses(model, x, targets)
    weights = strategy.backward(losses, torch.tensor([1.0, 0.0]), model.groups(z), step_ctx())

    assert weights.tolist() == [1.0, 0.0]
    for p in model.heads[1].parameters():
        assert p.grad is None or torch.count_nonzero(p.grad) == 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.heads[0].parameters())
    # With one active task every strategy reduces to that task's own gradient.
    for p, expected in zip(model.trunk.parameters(), expected_shared, strict=True):
        assert p.grad is not None
        torch.testing.assert_close(p.grad, expected, rtol=1e-4, atol=1e-6)
    for p in strategy.parameters():
        assert p.grad is None or p.grad[1] == 0


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_gradient_methods_give_each_head_its_own_task_gradient(name: str) -> None:
    model = ToyMTL()
    x, targets = toy_data()
    scale = torch.tensor([1.0, 2.0])
    losses, _ = toy_losses(model, x, targets)
    expected = [
        torch.autograd.grad(scale[t] * losses[t], list(model.heads[t].parameters()))
        for t in range(2)
    ]

    strategy = build_strategy(name, None, make_ctx())
    losses, z = toy_losses(model, x, targets)
    strategy.backward(losses, scale, model.groups(z), step_ctx())

    for t in range(2):
        for p, grad in zip(model.heads[t].parameters(), expected[t], strict=True):
            assert p.grad is not None
            torch.testing.assert_close(p.grad, grad)


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_gradient_methods_accumulate_into_grad(name: str) -> None:
    model = ToyMTL()
    x, targets = toy_data()
    strategy = build_strategy(name, None, make_ctx())
    losses, z = toy_losses(model, x, targets)
    strategy.backward(losses, torch.ones(2), model.groups(z), step_ctx())
    once = [p.grad.clone() for p in model.trunk.parameters() if p.grad is not None]

    strategy = build_strategy(name, None, make_ctx())
    losses, z = toy_losses(model, x, targets)
    strategy.backward(losses, torch.ones(2), model.groups(z), step_ctx())
    twice = [p.grad for p in model.trunk.parameters() if p.grad is not None]

    assert len(once) == len(twice) == 2
    for a, b in zip(once, twice, strict=True):
        torch.testing.assert_close(b, 2 * a)


@pytest.mark.parametrize("name", [*GRADIENT_METHODS, "gradnorm"])
def test_strategies_needing_shared_parameters_reject_models_without(name: str) -> None:
    head = nn.Linear(3, 1)
    losses = torch.stack([head(torch.ones(3)).sum(), head(torch.zeros(3)).sum()])
    groups = ParameterGroups(shared=[], task_specific=list(head.parameters()), last_shared=[])
    strategy = build_strategy(name, None, make_ctx())
    with pytest.raises(ConfigError, match="shared parameters"):
        strategy.backward(losses, torch.ones(2), groups, step_ctx())


@pytest.mark.parametrize(
    ("name", "params", "parameter"),
    [
        ("dwa", {"tau": 0}, "tau"),
        ("gradnorm", {"alpha": -0.5}, "alpha"),
        ("cagrad", {"c": -0.1}, "c"),
        ("cagrad", {"rescale": 3}, "rescale"),
        ("loss_balance", {"beta": 1.0}, "beta"),
        ("famo", {"lr": 0}, "lr"),
        ("mgda", {"normalization": "l1"}, "normalization"),
        ("fixed", {"nope": 1}, "nope"),
        ("dwa", {"temperature": 2}, "temperature"),
    ],
)
def test_bad_hyper_parameters_raise_config_error_naming_them(
    name: str, params: dict[str, Any], parameter: str
) -> None:
    with pytest.raises(ConfigError, match=f"'{parameter}'"):
        build_strategy(name, params, make_ctx())


def test_unknown_key_lists_valid_parameters() -> None:
    with pytest.raises(ConfigError, match="valid parameters: tau"):
        build_strategy("dwa", {"nope": 1}, make_ctx())


def test_unknown_strategy_lists_valid_names() -> None:
    with pytest.raises(KeyError, match="valid choices: cagrad, dwa"):
        build_strategy("gradnrom", None, make_ctx())
