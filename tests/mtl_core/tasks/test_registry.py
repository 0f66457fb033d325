"""Registering losses and metrics: the built-ins and a user's own go through one decorator."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from mtl_core.tasks import (
    LOSSES,
    build_loss,
    build_metric,
    list_losses,
    list_metrics,
    register_loss,
    register_metric,
    task_losses,
)

BUILTIN_LOSSES = ["bce_with_logits", "cross_entropy", "huber", "kl_div", "l1", "mse"]
BUILTIN_METRICS = {"accuracy": True, "auc": True, "macro_f1": True, "mae": False, "rmse": False}


def _pairwise(pred: Tensor, target: Tensor) -> Tensor:
    return (pred.squeeze(-1) - target).abs().mean()


def _score(pred: Tensor, target: Tensor) -> float:
    return 0.5


def test_the_builtins_are_listed_with_their_directions() -> None:
    assert list_losses() == BUILTIN_LOSSES
    assert list_metrics() == sorted(BUILTIN_METRICS)
    for name, higher in BUILTIN_METRICS.items():
        assert build_metric(name).higher_is_better is higher


def test_a_user_loss_and_metric_register_and_list() -> None:
    assert register_loss("user_abs")(_pairwise) is _pairwise  # the function stays itself
    assert register_metric("user_score", higher_is_better=False)(_score) is _score
    assert "user_abs" in list_losses() and "user_score" in list_metrics()
    assert build_loss("user_abs") is _pairwise
    metric = build_metric("user_score")
    assert metric.higher_is_better is False
    assert metric(torch.zeros(3, 1), torch.zeros(3)) == 0.5


def test_registering_the_same_function_again_changes_nothing() -> None:
    register_loss("user_abs")(_pairwise)
    register_loss("user_abs")(_pairwise)
    register_metric("user_score", higher_is_better=True)(_score)
    register_metric("user_score", higher_is_better=True)(_score)
    assert list_losses().count("user_abs") == 1 and list_metrics().count("user_score") == 1


def _one_arg(pred: Tensor) -> Tensor:
    return pred.mean()


def _three_args(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    return pred.mean()


#: Not a function at all: statically untyped on purpose, so the registry's run-time check is
#: what refuses it.
NOT_A_FUNCTION: Any = 3


def _with_default(pred: Tensor, target: Tensor, gamma: float = 2.0) -> Tensor:
    return pred.mean()


@pytest.mark.parametrize(
    ("register", "expected"),
    [
        (
            lambda: register_loss("mse")(_pairwise),
            ["loss 'mse' is already registered", "mtl_core.tasks.losses.mse", "cross_entropy"],
        ),
        (
            lambda: register_metric("auc", higher_is_better=True)(_score),
            ["metric 'auc' is already registered", "macro_f1"],
        ),
        (
            lambda: register_loss("user_abs")(_one_arg),
            ["loss 'user_abs'", "(pred, target)", "_one_arg(pred: 'Tensor')"],
        ),
        (lambda: register_loss("user_abs")(_three_args), ["(pred, target)", "weight"]),
        (lambda: register_loss("user_abs")(NOT_A_FUNCTION), ["(pred, target)", "got 3"]),
        (
            lambda: register_metric("user_score", higher_is_better=True)(_one_arg),
            ["metric 'user_score'", "(pred, target) -> float"],
        ),
        (
            lambda: register_metric("user_score", higher_is_better="max"),  # type: ignore[arg-type]
            ["higher_is_better must be True", "or False", "got 'max'"],
        ),
        (
            lambda: register_metric("user_score", higher_is_better=1),  # type: ignore[arg-type]
            ["higher_is_better must be True", "got 1"],
        ),
        (
            lambda: register_metric("user_score", higher_is_better=None),  # type: ignore[arg-type]
            ["got None"],
        ),
        (lambda: register_loss("two words"), ["letters, digits", "'two words'"]),
        (lambda: register_loss(""), ["got ''"]),
        (lambda: register_metric(3, higher_is_better=True), ["got 3"]),  # type: ignore[arg-type]
    ],
)
def test_a_bad_registration_is_one_line_naming_the_value(
    register: Any, expected: list[str]
) -> None:
    before_losses, before_metrics = list_losses(), list_metrics()
    with pytest.raises(ValueError) as error:
        register()
    message = str(error.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, message
    assert (list_losses(), list_metrics()) == (before_losses, before_metrics)


def test_a_taken_name_is_refused_for_another_function_too() -> None:
    register_loss("user_abs")(_pairwise)
    with pytest.raises(
        ValueError, match=r"loss 'user_abs' is already registered \(by .*_pairwise\)"
    ):
        register_loss("user_abs")(_with_default)
    register_metric("user_score", higher_is_better=True)(_score)
    with pytest.raises(ValueError, match="metric 'user_score' is already registered"):
        register_metric("user_score", higher_is_better=False)(_score)  # another direction


def test_extra_parameters_with_defaults_are_fine() -> None:
    register_loss("user_focal")(_with_default)
    assert LOSSES.get("user_focal") is _with_default


def test_a_metric_returning_a_tensor_gives_a_float_and_anything_else_is_named() -> None:
    register_metric("user_tensor", higher_is_better=True)(lambda p, t: (p == t).float().mean())
    value = build_metric("user_tensor")(torch.ones(4), torch.ones(4))
    assert type(value) is float and value == 1.0
    register_metric("user_text", higher_is_better=True)(lambda p, t: "good")
    with pytest.raises(TypeError, match="metric 'user_text' must return a float, got str"):
        build_metric("user_text")(torch.ones(4), torch.ones(4))


def test_task_losses_names_the_task_whose_loss_is_not_a_scalar() -> None:
    def per_sample(pred: Tensor, target: Tensor) -> Tensor:
        return (pred.squeeze(-1) - target) ** 2  # forgot the mean

    pred, target = torch.randn(5, 1), torch.randn(5)
    mse = build_loss("mse")
    assert task_losses([mse, mse], ["a", "b"], [pred, pred], [target, target]).shape == (2,)
    with pytest.raises(ValueError, match=r"task 'b' must return a 0-dimensional .*shape \[5\]"):
        task_losses([mse, per_sample], ["a", "b"], [pred, pred], [target, target])


# kl_div has no vmap batching rule yet: torch falls back to a loop (and says so).
@pytest.mark.filterwarnings("ignore:There is a performance drop")
@pytest.mark.parametrize("name", BUILTIN_LOSSES)
def test_every_builtin_loss_meets_the_user_contract_under_vmap(name: str) -> None:
    """The contract `register_loss` states holds for the built-ins: scalar, vmap-able."""
    k, b, dim = 3, 6, 4
    pred = torch.randn(k, b, dim)
    if name == "cross_entropy":
        target = torch.randint(0, dim, (k, b))
    elif name == "kl_div":
        target = torch.softmax(torch.randn(k, b, dim), dim=-1)
    elif name == "bce_with_logits":
        target = torch.randint(0, 2, (k, b, dim)).float()
    else:
        target = torch.randn(k, b, dim)
    loss = build_loss(name)
    batched = torch.func.vmap(loss)(pred, target)
    alone = torch.stack([loss(pred[i], target[i]) for i in range(k)])
    torch.testing.assert_close(batched, alone)
