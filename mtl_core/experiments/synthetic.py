"""A generated two-task problem with a known conflict between the tasks; needs no files."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from mtl_core.architectures import NetworkParts
from mtl_core.experiments._base import (
    DataShapes,
    DataSplits,
    Experiment,
    Split,
    TrainingDefaults,
)
from mtl_core.experiments._registry import register_experiment
from mtl_core.tasks import Task

NUM_FEATURES = 16
NUM_CLASSES = 3
# Tertiles of the standard normal: x·b ~ N(0, 1) for unit b, so the classes are balanced.
_CLASS_EDGES = (-0.4307272992954576, 0.4307272992954576)


def task_directions(seed: int, cosine: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors ``a`` (regression) and ``b`` (classification) with ``a·b = cosine``."""
    rng = np.random.default_rng([seed, 0])
    a = rng.standard_normal(NUM_FEATURES)
    a /= np.linalg.norm(a)
    u = rng.standard_normal(NUM_FEATURES)
    u -= (u @ a) * a
    u /= np.linalg.norm(u)
    b = cosine * a + math.sqrt(1.0 - cosine**2) * u
    return a, b


_Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]  # inputs, regression, classification


@functools.lru_cache(maxsize=8)
def _generate(
    sizes: tuple[int, int, int], seed: int, cosine: float, noise: float
) -> tuple[_Arrays, ...]:
    a, b = task_directions(seed, cosine)
    rng = np.random.default_rng([seed, 1])
    n = sum(sizes)
    x = rng.standard_normal((n, NUM_FEATURES))
    y_reg = x @ a + noise * rng.standard_normal(n)
    y_cls = np.digitize(x @ b + noise * rng.standard_normal(n), _CLASS_EDGES)
    out = []
    start = 0
    for size in sizes:
        stop = start + size
        out.append(
            (
                x[start:stop].astype(np.float32),
                y_reg[start:stop].astype(np.float32),
                y_cls[start:stop].astype(np.int64),
            )
        )
        start = stop
    return tuple(out)


def _split(arrays: _Arrays) -> Split:
    x, y_reg, y_cls = arrays
    return Split(torch.from_numpy(x), [torch.from_numpy(y_reg), torch.from_numpy(y_cls)])


def _blocks(input_dim: int) -> list[nn.Module]:
    return [
        nn.Sequential(nn.Linear(input_dim, 32), nn.ReLU()),
        nn.Sequential(nn.Linear(32, 32), nn.ReLU()),
    ]


def _head(task_index: int) -> nn.Module:
    out = 1 if task_index == 0 else NUM_CLASSES
    return nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, out))


@register_experiment
class Synthetic(Experiment):
    """Two tasks on x ~ N(0, I₁₆) whose target directions point partly against each other.

    "regression": y = x·a + ε (MSE, RMSE). "classification": 3 balanced classes cut from
    x·b + ε at the tertiles of N(0, 1) (cross-entropy, accuracy). ``a`` and ``b`` are unit
    vectors with cos(a, b) = ``cosine`` (-0.5 by default), so features that serve one task
    partly oppose the other: a small, fast stand-in for conflicting real tasks in unit tests.

    Args:
        train_size: training samples (default 2,000).
        val_size: validation samples (default 500).
        test_size: test samples (default 500).
        seed: seed of the directions and the samples.
        cosine: cos(a, b), in [-1, 1].
        noise: std of the Gaussian noise ε added to both projections.
    """

    name: ClassVar[str] = "synthetic"
    description: ClassVar[str] = (
        "Generated 16-feature problem: a regression and a 3-class task whose directions have "
        "cosine -0.5 (a known conflict); no files, trains in seconds."
    )
    tasks: ClassVar[tuple[Task, ...]] = (
        Task("regression", "mse", "rmse", 1, ("mae",)),
        Task("classification", "cross_entropy", "accuracy", NUM_CLASSES, ("macro_f1",)),
    )
    defaults: ClassVar[TrainingDefaults] = TrainingDefaults(
        epochs=5, batch_size=128, lr=3e-3, optimizer="adam", architecture="hard"
    )

    def __init__(
        self,
        train_size: int = 2_000,
        val_size: int = 500,
        test_size: int = 500,
        seed: int = 0,
        cosine: float = -0.5,
        noise: float = 0.1,
    ) -> None:
        for label, value in (
            ("train_size", train_size),
            ("val_size", val_size),
            ("test_size", test_size),
        ):
            if value < 1:
                raise ValueError(f"{label} must be >= 1, got {value}")
        if not -1.0 <= cosine <= 1.0:
            raise ValueError(f"cosine must be in [-1, 1], got {cosine=}")
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise=}")
        self.sizes = (train_size, val_size, test_size)
        self.seed = seed
        self.cosine = cosine
        self.noise = noise

    def load_splits(self, data_dir: Path | None) -> DataSplits:
        train, val, test = _generate(self.sizes, self.seed, self.cosine, self.noise)
        return DataSplits(_split(train), _split(val), _split(test))

    def nominal_shapes(self) -> DataShapes:
        return DataShapes((NUM_FEATURES,))

    def network_parts(self, data: DataShapes) -> NetworkParts:
        return NetworkParts(
            make_blocks=functools.partial(_blocks, data.input_dim),
            representation_dim=32,
            make_head=_head,
            input_dim=data.input_dim,
            num_tasks=len(self.tasks),
        )
