"""Contract tests walking every registered strategy through `MultiTaskLoss` on a toy model."""

from __future__ import annotations

import pkgutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from mtl_core import weighting
from mtl_core.errors import ConfigError
from mtl_core.production import MultiTaskLoss
from mtl_core.weighting import (
    STRATEGIES,
    GradientWeighting,
    LossWeighting,
    StepInputs,
    build_strategy,
    list_strategies,
    parse_strategy_config,
)
from tests.mtl_core.weighting._toy import ToyMTL, make_ctx, toy_data, toy_losses

TASKS = ("task0", "task1")
#: Meta-learned strategies read validation batches through the trainer's look-ahead: a
#: `MultiTaskLoss` refuses them (`test_a_meta_learned_strategy_is_refused_by_multitask_loss`).
META_LEARNED = [n for n in list_strategies() if STRATEGIES.get(n).reads_validation]
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    (name, {}) for name in list_strategies() if name not in META_LEARNED
] + [
    ("mgda", {"upper_bound": True}),
    ("mgda", {"normalization": "l2"}),
    ("mgda", {"normalization": "loss+"}),
    ("cagrad", {"c": 0.0}),
    ("cagrad", {"rescale": 0}),
]
GRADIENT_METHODS = [n for n in list_strategies() if STRATEGIES.get(n).uses_task_gradients]


def _backward(
    loss: MultiTaskLoss, model: ToyMTL, losses: list[torch.Tensor], z: torch.Tensor
) -> dict[str, float]:
    return loss.backward(
        losses,
        shared_parameters=model.shared(),
        task_parameters=model.task_specific(),
        last_shared_parameters=list(model.trunk[0].parameters()),
        representation=z,
        # MoDo, SDMGrad: the toy's full batch stands in for each further batch.
        extra_losses=[losses] * (loss.batches_per_step - 1),
    )


@pytest.mark.parametrize("name", META_LEARNED)
def test_a_meta_learned_strategy_is_refused_by_multitask_loss(name: str) -> None:
    with pytest.raises(
        ConfigError, match=f"strategy '{name}' learns its weights.*effective_weights"
    ):
        MultiTaskLoss(TASKS, name)


@pytest.mark.parametrize("name", META_LEARNED)
def test_a_meta_learned_strategy_without_a_look_ahead_says_where_it_trains(name: str) -> None:
    strategy = build_strategy(name, 1, 2)
    strategy.reset_slot(0, parse_strategy_config(name, {}), make_ctx(2))
    assert isinstance(strategy, LossWeighting)
    losses = torch.ones(1, 2, requires_grad=True)
    inputs = StepInputs(losses, torch.ones(1, 2), [], torch.ones(1, dtype=torch.bool))
    with pytest.raises(ConfigError, match=f"'{name}'.*look-ahead step on validation batches"):
        strategy.objective(inputs)


def test_each_strategy_module_registers_the_strategy_of_its_name() -> None:
    # A method is its module and its registration: no list of names to keep in step.
    package = Path(weighting.__file__).parent
    modules = {m.name for m in pkgutil.iter_modules([str(package)]) if not m.name.startswith("_")}
    assert set(list_strategies()) == modules
    for name in modules:
        cls = STRATEGIES.get(name)
        assert cls.name == name and cls.__module__ == f"mtl_core.weighting.{name}"
        assert cls.uses_task_gradients == issubclass(cls, GradientWeighting)
    assert len(modules) >= 10


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=lambda v: str(v))
def test_strategy_trains_toy_model(name: str, params: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    model = ToyMTL()
    x, targets = toy_data()
    loss = MultiTaskLoss(TASKS, name, params, epochs=10)
    optimizer = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=1e-2)
    with torch.no_grad():
        initial = torch.stack(toy_losses(model, x, targets)[0])
    for _ in range(10):
        epoch_losses = []
        for _ in range(10):
            optimizer.zero_grad()
            losses, z = toy_losses(model, x, targets)
            weights = _backward(loss, model, losses, z)
            assert list(weights) == list(TASKS)
            assert all(torch.isfinite(torch.tensor(w)) and w >= 0 for w in weights.values())
            assert sum(weights.values()) == pytest.approx(2.0, rel=1e-5)
            optimizer.step()
            epoch_losses.append([v.item() for v in losses])
        loss.epoch_end(torch.tensor(epoch_losses).mean(dim=0).tolist())
    with torch.no_grad():
        final = torch.stack(toy_losses(model, x, targets)[0])
    # MGDA without normalisation favours the small-gradient task (by design), so the bar
    # is "every task improves and the total falls by a quarter", not a race.
    assert (final < initial).all()
    assert final.sum() < 0.75 * initial.sum()


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack([(x * y).sum() for x, y in zip(a, b, strict=True)]).sum()


@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=lambda v: str(v))
def test_inactive_task_gets_no_weight_and_no_gradient(name: str, params: dict[str, Any]) -> None:
    model = ToyMTL()
    x, targets = toy_data()
    losses, _ = toy_losses(model, x, targets)
    expected_shared = torch.autograd.grad(losses[0], model.shared())

    loss = MultiTaskLoss(TASKS, name, params, weights={"task1": 0.0})
    losses, z = toy_losses(model, x, targets)
    weights = _backward(loss, model, losses, z)

    assert weights == {"task0": 1.0, "task1": 0.0}
    for p in model.heads[1].parameters():
        assert p.grad is None or torch.count_nonzero(p.grad) == 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.heads[0].parameters())
    # With one active task every strategy reduces to that task's own gradient (a positive
    # multiple of it where the strategy says so, e.g. ∇L / L for the log-loss methods).
    grads = []
    for p in model.shared():
        assert p.grad is not None
        grads.append(p.grad)
    factor = 1.0
    if not STRATEGIES.get(name).single_task_as_is:
        factor = float(_dot(grads, expected_shared) / _dot(expected_shared, expected_shared))
        assert factor > 0
    for grad, expected in zip(grads, expected_shared, strict=True):
        torch.testing.assert_close(grad, factor * expected, rtol=1e-4, atol=1e-6 * factor)
    for p in loss.parameters():
        assert p.grad is None or p.grad[0, 1] == 0


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_gradient_methods_give_each_head_its_own_task_gradient(name: str) -> None:
    model = ToyMTL()
    x, targets = toy_data()
    scale = [1.0, 2.0]
    losses, _ = toy_losses(model, x, targets)
    expected = [
        torch.autograd.grad(scale[t] * losses[t], list(model.heads[t].parameters()))
        for t in range(2)
    ]

    loss = MultiTaskLoss(TASKS, name, weights=dict(zip(TASKS, scale, strict=True)))
    losses, z = toy_losses(model, x, targets)
    _backward(loss, model, losses, z)

    for t in range(2):
        for p, grad in zip(model.heads[t].parameters(), expected[t], strict=True):
            assert p.grad is not None
            torch.testing.assert_close(p.grad, grad)


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_gradient_methods_accumulate_into_grad(name: str) -> None:
    model = ToyMTL()
    x, targets = toy_data()
    losses, z = toy_losses(model, x, targets)
    _backward(MultiTaskLoss(TASKS, name), model, losses, z)
    once = [p.grad.clone() for p in model.shared() if p.grad is not None]

    losses, z = toy_losses(model, x, targets)
    _backward(MultiTaskLoss(TASKS, name), model, losses, z)
    twice = [p.grad for p in model.shared() if p.grad is not None]

    assert len(once) == len(twice) == 2
    for a, b in zip(once, twice, strict=True):
        torch.testing.assert_close(b, 2 * a)


@pytest.mark.parametrize("name", [*GRADIENT_METHODS, "gradnorm"])
def test_strategies_needing_shared_parameters_reject_models_without(name: str) -> None:
    head = nn.Linear(3, 1)
    losses = [head(torch.ones(3)).sum(), head(torch.zeros(3)).sum()]
    loss = MultiTaskLoss(TASKS, name)
    with pytest.raises(ConfigError, match="shared parameters"):
        loss.backward(
            losses,
            shared_parameters=[],
            task_parameters=list(head.parameters()),
            extra_losses=[losses] * (loss.batches_per_step - 1),
        )


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
        ("dwa", {"tau": float("inf")}, "tau"),
    ],
)
def test_bad_hyper_parameters_raise_config_error_naming_them(
    name: str, params: dict[str, Any], parameter: str
) -> None:
    with pytest.raises(ConfigError, match=f"'{parameter}'") as error:
        parse_strategy_config(name, params)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match=f"'{parameter}'"):
        MultiTaskLoss(TASKS, name, params)


def test_unknown_key_lists_valid_parameters() -> None:
    with pytest.raises(ConfigError, match=r"valid parameters: tau$"):
        parse_strategy_config("dwa", {"nope": 1})


def test_unknown_strategy_lists_valid_names() -> None:
    valid = f"valid choices: {', '.join(sorted(list_strategies()))}"
    with pytest.raises(KeyError, match=valid):
        build_strategy("gradnrom", 1, 2)
    with pytest.raises(KeyError, match=valid):
        parse_strategy_config("gradnrom", None)


@pytest.mark.parametrize("name", list_strategies())
def test_reset_slot_rejects_another_strategy_config(name: str) -> None:
    other = "fixed" if name != "fixed" else "dwa"
    strategy = build_strategy(name, 1, 2)
    with pytest.raises(TypeError, match=name):
        strategy.reset_slot(0, parse_strategy_config(other, None), make_ctx())
