"""In-process training for benchmarks/search_quality.py: single-task baselines, every
registered strategy at its defaults, and the dense grid over the fixed weights, all through
the one batched trainer (`mtl_core.batched.train_batch`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mtl_core.batched import batchable, plan_batches, train_batch
from mtl_core.config import TrialConfig
from mtl_core.experiments import DataSplits, get_experiment
from mtl_core.trainer import prepare_data, train_trial
from mtl_core.weighting import list_strategies

logger = logging.getLogger("search_quality")

#: Trials of one call to `train_batch` (fixed-weight trials all batch together).
MAX_K = 64


@dataclass(frozen=True)
class Sizes:
    """How much to train: the same for every approach of one experiment."""

    epochs: int
    max_train_samples: int | None
    seeds: int
    grid_points: int
    weight_range: tuple[float, float]  # of the second task's weight, the first's being 1
    device: str = "cpu"


@dataclass(frozen=True)
class Run:
    """One trained configuration at one seed: its metrics after the last epoch."""

    label: str
    strategy: str
    weights: dict[str, float]
    seed: int
    val: dict[str, float]
    test: dict[str, float]
    epochs_run: int


@dataclass
class Trained:
    """Runs and what they cost: trial-epochs, and this process's CPU seconds."""

    runs: list[Run] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0

    @property
    def trial_epochs(self) -> int:
        return sum(run.epochs_run for run in self.runs)

    def by_label(self) -> dict[str, list[Run]]:
        out: dict[str, list[Run]] = {}
        for run in self.runs:
            out.setdefault(run.label, []).append(run)
        return out


def load(experiment: str, data_dir: Path, sizes: Sizes) -> DataSplits:
    return prepare_data(
        get_experiment(experiment), data_dir, torch.device(sizes.device), sizes.max_train_samples
    )


def train_labelled(
    labelled: Sequence[tuple[str, TrialConfig]], data: DataSplits, data_dir: Path
) -> Trained:
    """Train every config, K at a time where they batch together; keep each label."""
    configs = [config for _, config in labelled]
    out = Trained()
    started, cpu_started = time.perf_counter(), time.process_time()
    for group in plan_batches(configs, MAX_K):
        batch = [configs[i] for i in group]
        if len(batch) == 1 and not batchable(batch[0]):
            results = [train_trial(batch[0], data_dir, data=data)]
        else:
            results = train_batch(batch, data_dir, data=data)
        for index, result in zip(group, results, strict=True):
            config = configs[index]
            out.runs.append(
                Run(
                    label=labelled[index][0],
                    strategy=config.strategy,
                    weights=dict(config.weights),
                    seed=config.seed,
                    val=dict(result.val_metrics),
                    test=dict(result.test_metrics),
                    epochs_run=result.epochs_run,
                )
            )
        logger.info(
            "  trained %d/%d configs (%.0f s)",
            len(out.runs),
            len(configs),
            time.perf_counter() - started,
        )
    out.cpu_s = time.process_time() - cpu_started
    out.wall_s = time.perf_counter() - started
    return out


def _config(
    experiment: str, sizes: Sizes, seed: int, weights: dict[str, float], strategy: str = "fixed"
) -> TrialConfig:
    return TrialConfig(
        experiment=experiment,
        strategy=strategy,
        weights=weights,
        seed=seed,
        epochs=sizes.epochs,
        max_train_samples=sizes.max_train_samples,
        device=sizes.device,
    )


def single_task_labelled(experiment: str, sizes: Sizes) -> list[tuple[str, TrialConfig]]:
    """Each task alone (weight 0 on the other), at every seed; label ``alone:<task>``."""
    tasks = get_experiment(experiment).task_names
    return [
        (f"alone:{task}", _config(experiment, sizes, seed, {t: float(t == task) for t in tasks}))
        for task in tasks
        for seed in range(sizes.seeds)
    ]


def strategy_labelled(experiment: str, sizes: Sizes) -> list[tuple[str, TrialConfig]]:
    """Every registered strategy at its default hyper-parameters and equal weights (``fixed``
    with equal weights is "uniform"); label ``strategy:<name>``."""
    tasks = get_experiment(experiment).task_names
    equal = dict.fromkeys(tasks, 1.0)
    return [
        (f"strategy:{name}", _config(experiment, sizes, seed, equal, strategy=name))
        for name in list_strategies()
        for seed in range(sizes.seeds)
    ]


def grid_weights(experiment: str, ratios: Sequence[float]) -> list[dict[str, float]]:
    """The grid's weights: the first task 1, the second each ratio (2-task experiments)."""
    tasks = get_experiment(experiment).task_names
    if len(tasks) != 2:
        raise ValueError(f"the weight grid needs 2 tasks; {experiment} has {len(tasks)}")
    return [{tasks[0]: 1.0, tasks[1]: ratio} for ratio in ratios]


def grid_labelled(
    experiment: str, sizes: Sizes, ratios: Sequence[float]
) -> list[tuple[str, TrialConfig]]:
    """The fixed-weight grid at every seed; label ``grid:<index>``."""
    return [
        (f"grid:{i}", _config(experiment, sizes, seed, weights))
        for i, weights in enumerate(grid_weights(experiment, ratios))
        for seed in range(sizes.seeds)
    ]
