"""Task definitions: a task is a name, a loss and a metric."""

from mtl_core.tasks._base import Task
from mtl_core.tasks.losses import LOSSES, build_loss, list_losses
from mtl_core.tasks.metrics import METRICS, Metric, build_metric, list_metrics

__all__ = [
    "LOSSES",
    "METRICS",
    "Metric",
    "Task",
    "build_loss",
    "build_metric",
    "list_losses",
    "list_metrics",
]
