"""The loss and metric registries: ``@register_loss`` and ``@register_metric``.

The built-ins (`losses`, `metrics`) and a user's own (a plugin module imported by
`mtl_core.experiments.load_plugins`) register through the same two decorators, so a task names
either kind the same way and every entry passes the same checks: a new name, a callable that
takes ``(pred, target)``, and for a metric a boolean direction. Each check fails with a
one-line `ValueError` naming the bad value and the valid choices.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

import torch
from torch import Tensor

from mtl_core.registry import Registry

LossFn = Callable[[Tensor, Tensor], Tensor]
MetricFn = Callable[[Tensor, Tensor], float]
F = TypeVar("F", bound=Callable[..., object])


@dataclass(frozen=True)
class Metric:
    """A registered metric: ``fn(pred, target) -> float`` over a whole split, and its direction.

    Args:
        name: the name tasks use.
        fn: the function; see `register_metric` for what it receives.
        higher_is_better: True when a larger value is better (accuracy), False when a smaller
            one is (MAE); the search maximises or minimises accordingly.
    """

    name: str
    fn: MetricFn
    higher_is_better: bool

    def __call__(self, pred: Tensor, target: Tensor) -> float:
        value = self.fn(pred, target)
        if isinstance(value, Tensor) and value.numel() == 1:
            return float(value.item())
        if isinstance(value, numbers.Real):
            return float(value)
        raise TypeError(
            f"metric {self.name!r} must return a float, got {type(value).__name__} {value!r:.80}"
        )


LOSSES: Registry[LossFn] = Registry("loss")
METRICS: Registry[Metric] = Registry("metric")


def _describe(fn: object) -> str:
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{module}.{name}" if module else name


def _check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(
            f"a {kind} name must be a non-empty string of letters, digits, '_' and '-', "
            f"got {name!r}"
        )
    return name


def _taken(kind: str, taken: list[str], name: str, by: object) -> ValueError:
    return ValueError(
        f"{kind} {name!r} is already registered (by {_describe(by)}); choose a name that is "
        f"not one of: {', '.join(taken)}"
    )


def _check_fn(kind: str, name: str, fn: object, returns: str) -> None:
    """A callable that accepts ``(pred, target)``, where its signature can be read."""
    if not callable(fn):
        raise ValueError(
            f"{kind} {name!r} must be a function (pred, target) -> {returns}, got {fn!r}"
        )
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some C callables have none: nothing cheap to check
        return
    try:
        signature.bind(None, None)
    except TypeError:
        raise ValueError(
            f"{kind} {name!r} must be a function (pred, target) -> {returns}, got "
            f"{_describe(fn)}{signature}"
        ) from None


def register_loss(name: str) -> Callable[[F], F]:
    """Decorator: register ``loss(pred, target) -> Tensor`` under ``name`` for `Task.loss`.

    The contract (the trainer relies on it; docs/experiments.md, "Your own losses and
    metrics"):

    - ``pred`` is the task head's output for one trial's batch, ``[B, output_dim]`` (whatever
      the head returns), float32 (bfloat16 under ``precision="bf16"``), on the training device.
    - ``target`` is that batch's rows of the task's target tensor, as `load_splits` returned it
      (``[B]`` or ``[B, ...]``, its own dtype), on the same device.
    - It returns a 0-dimensional tensor, reduced over the batch (a mean keeps the task weights
      independent of the batch size), differentiable with respect to ``pred``.
    - With K > 1 trials in one batch, it runs inside ``torch.func.vmap`` over the trials: it
      sees one trial's tensors (no K dimension) and must use torch operations only: no
      ``.item()``, ``.tolist()``, ``float(t)``, numpy, ``if`` on tensor values, boolean-mask
      indexing (``pred[target > 0]``: use ``torch.where`` or a 0/1 weight) nor in-place writes
      to its arguments. ``pred`` is always batched over the trials; ``target`` is too whenever
      the trials sit at different epochs (after a slot is refilled), so the rule holds for both.
      At K = 1 it is called directly, so train it at K = 2 once to check.

    Raises:
        ValueError: a name that is not letters, digits, '_' and '-', a name already registered
            (the built-ins included) by another function, or a function that cannot take
            ``(pred, target)``.
    """
    checked = _check_name("loss", name)

    def decorator(fn: F) -> F:
        _check_fn("loss", checked, fn, "Tensor")
        if checked in LOSSES and LOSSES.get(checked) is not fn:
            raise _taken("loss", LOSSES.names(), checked, LOSSES.get(checked))
        LOSSES.add(checked, cast(LossFn, fn))
        return fn

    return decorator


def register_metric(name: str, *, higher_is_better: bool) -> Callable[[F], F]:
    """Decorator: register ``metric(pred, target) -> float`` under ``name`` for `Task.metric`.

    The function is called outside autograd and outside vmap, once per task on the whole
    validation split after each epoch and once on the test split, with ``pred`` the head's
    outputs ``[N, output_dim]`` as float32 on the CPU (raw logits for a classifier) and
    ``target`` the split's target tensor as `load_splits` returned it, on the CPU. It returns
    a Python float (a one-element tensor is accepted); any Python or numpy code is fine.

    Args:
        name: the name tasks use (``Task(..., metric=name)`` or in ``extra_metrics``).
        higher_is_better: True when larger is better (accuracy, AUC, F-beta), False when
            smaller is (MAE, RMSE). A task's main metric sets its optimisation direction.

    Raises:
        ValueError: a bad or taken name (see `register_loss`), ``higher_is_better`` not True or
            False, or a function that cannot take ``(pred, target)``.
    """
    checked = _check_name("metric", name)
    if not isinstance(higher_is_better, bool):
        raise ValueError(
            f"metric {checked!r}: higher_is_better must be True (larger is better) or False "
            f"(smaller is better), got {higher_is_better!r}"
        )

    def decorator(fn: F) -> F:
        _check_fn("metric", checked, fn, "float")
        if checked in METRICS:
            existing = METRICS.get(checked)
            if existing.fn is fn and existing.higher_is_better == higher_is_better:
                return fn  # the same registration again (a module imported twice)
            raise _taken("metric", METRICS.names(), checked, existing.fn)
        METRICS.add(checked, Metric(checked, cast(MetricFn, fn), higher_is_better))
        return fn

    return decorator


def build_loss(name: str) -> LossFn:
    """The loss registered as ``name`` (`UnknownNameError` lists the valid names)."""
    return LOSSES.get(name)


def build_metric(name: str) -> Metric:
    """The metric registered as ``name`` (`UnknownNameError` lists the valid names)."""
    return METRICS.get(name)


def list_losses() -> list[str]:
    """The registered loss names, sorted (the built-ins and any a plugin registered)."""
    return LOSSES.names()


def list_metrics() -> list[str]:
    """The registered metric names, sorted (the built-ins and any a plugin registered)."""
    return METRICS.names()


def task_losses(
    losses: Sequence[LossFn],
    names: Sequence[str],
    outputs: Sequence[Tensor],
    targets: Sequence[Tensor],
) -> Tensor:
    """One trial's task losses ``[T]``: each task's loss on its output and target.

    Args:
        losses: one registered loss per task.
        names: the task names (for the error).
        outputs: one head output per task.
        targets: one target per task.

    Raises:
        ValueError: a loss that does not return a 0-dimensional tensor.
    """
    values = []
    for fn, name, out, target in zip(losses, names, outputs, targets, strict=True):
        value = fn(out, target)
        if not isinstance(value, Tensor) or value.dim() != 0:
            got = (
                f"shape {list(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
            )
            raise ValueError(
                f"the loss of task {name!r} must return a 0-dimensional tensor (reduce over the "
                f"batch, e.g. .mean()), got {got}"
            )
        values.append(value)
    return torch.stack(values)


__all__ = [
    "LOSSES",
    "METRICS",
    "LossFn",
    "Metric",
    "MetricFn",
    "build_loss",
    "build_metric",
    "list_losses",
    "list_metrics",
    "register_loss",
    "register_metric",
    "task_losses",
]
