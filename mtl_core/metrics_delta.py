"""Δm%: a multi-task model's mean relative gain over single-task baselines.

Maninis, Radosavovic, Kokkinos, "Attentive Single-Tasking of Multiple Tasks", CVPR 2019;
the convention of LibMTL (Lin & Zhang, JMLR 2023):

    Δm% = (1/T) Σ_t s_t · (M_t - B_t) / B_t x 100,   s_t = +1 if higher is better, else -1

with M_t the multi-task model's metric and B_t the single-task baseline of task t. A larger
Δm% is better; 0 means "as good as training each task alone". (DESIGN.md writes the sign as
(-1)^{h_t}; LibMTL's exponent is 1 - h_t with h_t = 1 for higher-is-better, which is what
"larger is better" requires and what is implemented here.)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path

from mtl_core.config import TrialConfig

logger = logging.getLogger(__name__)


def delta_m(
    metrics: Mapping[str, float],
    baselines: Mapping[str, float],
    higher_is_better: Mapping[str, bool],
) -> float:
    """Δm% of ``metrics`` against ``baselines`` over the tasks of ``higher_is_better``.

    Args:
        metrics: each task's metric of the multi-task model.
        baselines: each task's metric when trained alone; must be finite and non-zero.
        higher_is_better: the direction of each task's metric; its keys are the tasks averaged.

    Raises:
        ValueError: no tasks, a task missing from ``metrics`` / ``baselines``, or a zero or
            non-finite baseline (names the task).
    """
    if not higher_is_better:
        raise ValueError("delta_m needs at least one task, got higher_is_better={}")
    total = 0.0
    for task, higher in higher_is_better.items():
        if task not in metrics:
            raise ValueError(
                f"metrics have no value for task {task!r}; they have {sorted(metrics)}"
            )
        if task not in baselines:
            raise ValueError(
                f"baselines have no value for task {task!r}; they have {sorted(baselines)}"
            )
        base = float(baselines[task])
        if base == 0.0 or not math.isfinite(base):
            raise ValueError(f"baseline of task {task!r} must be finite and non-zero, got {base}")
        sign = 1.0 if higher else -1.0
        total += sign * (float(metrics[task]) - base) / base
    return 100.0 * total / len(higher_is_better)


def single_task_baselines(
    experiment_name: str, base_config: TrialConfig, data_dir: Path | str | None
) -> dict[str, float]:
    """Train each task of the experiment alone and return its validation metric.

    "Alone" means the same model and training settings as ``base_config`` (same architecture,
    epochs, learning rate, seed), with the ``fixed`` strategy, the ``joint`` schedule and
    weight 0 on every other task, so the other heads receive no gradient.

    Args:
        experiment_name: a name in `mtl_core.experiments.EXPERIMENTS`.
        base_config: the settings to train with; its strategy, schedule and weights are replaced.
        data_dir: where the experiment's data lie.
    """
    from mtl_core.experiments import get_experiment
    from mtl_core.trainer import train_trial

    experiment = get_experiment(experiment_name)
    baselines: dict[str, float] = {}
    for task in experiment.task_names:
        config = base_config.model_copy(
            update={
                "experiment": experiment_name,
                "strategy": "fixed",
                "strategy_params": {},
                "schedule": "joint",
                "schedule_params": {},
                "weights": {t: (1.0 if t == task else 0.0) for t in experiment.task_names},
            }
        )
        logger.info("training the single-task baseline of %r", task)
        result = train_trial(config, data_dir)
        baselines[task] = float(result.val_metrics[task])
    return baselines
