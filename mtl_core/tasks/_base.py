"""A task of a multi-task experiment."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """One task: its name, the loss it trains with and the metric it is judged by.

    Args:
        name: unique within the experiment; it names the task in weights, configs and results.
        loss: a name in `mtl_core.tasks.LOSSES` (e.g. "cross_entropy").
        metric: a name in `mtl_core.tasks.METRICS` (e.g. "accuracy"); its direction
            (higher or lower is better) comes from the metric.
        output_dim: the width of the task head's output.
        extra_metrics: further metrics reported for the task (not used as its objective).
    """

    name: str
    loss: str
    metric: str
    output_dim: int
    extra_metrics: tuple[str, ...] = ()
