"""Tasks and what they name: a task is a name, a loss and a metric.

Losses and metrics are registries filled by decorators, the built-ins (`losses`, `metrics`)
and a user's own alike: ``@register_loss("name")`` and
``@register_metric("name", higher_is_better=...)``; `list_losses` / `list_metrics` show them.
"""

from mtl_core.tasks import losses, metrics  # noqa: F401 - they register the built-ins
from mtl_core.tasks._base import Task
from mtl_core.tasks._registry import (
    LOSSES,
    METRICS,
    LossFn,
    Metric,
    MetricFn,
    build_loss,
    build_metric,
    list_losses,
    list_metrics,
    register_loss,
    register_metric,
    task_losses,
)

__all__ = [
    "LOSSES",
    "METRICS",
    "LossFn",
    "Metric",
    "MetricFn",
    "Task",
    "build_loss",
    "build_metric",
    "list_losses",
    "list_metrics",
    "register_loss",
    "register_metric",
    "task_losses",
]
