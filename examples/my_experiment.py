"""A complete user experiment: three tasks on generated sensor readings, no data files.

Copy this module into your own package (e.g. ``my_package/sensors.py``) and register it with
an entry point or through the worker's ``allowed_experiment_modules``; see
docs/experiments.md, "Adding your own experiment".
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from mtl_core.experiments import (
    DataShapes,
    DataSplits,
    Experiment,
    NetworkParts,
    Split,
    TrainingDefaults,
    register_experiment,
)
from mtl_core.tasks import Task

#: Features per generated sample (the network reads its width from the data, not from here).
NUM_FEATURES = 8
NUM_MODES = 3
HIDDEN = 32


def _split(rng: np.random.Generator, n: int) -> Split:
    x = rng.standard_normal((n, NUM_FEATURES))
    temperature = x[:, 0] - 0.5 * x[:, 1] + 0.1 * rng.standard_normal(n)
    fault = x[:, 2] + x[:, 3] > 0.5
    mode = np.digitize(x[:, 4], (-0.43, 0.43))  # tertiles of N(0, 1): balanced classes
    return Split(
        # Inputs must be float32 (numpy's default float64 is rejected at first load).
        torch.from_numpy(x.astype(np.float32)),
        # One target per task, in the order of `tasks`, each in its loss's dtype and shape.
        [
            torch.from_numpy(temperature.astype(np.float32)),  # mse: float32 [N]
            torch.from_numpy(fault.astype(np.float32)),  # bce_with_logits: 0/1 float32 [N]
            torch.from_numpy(mode.astype(np.int64)),  # cross_entropy: class indices int64 [N]
        ],
    )


def _blocks(input_dim: int) -> list[nn.Module]:
    # New modules on every call: soft sharing and MMoE build several trunks.
    return [
        nn.Sequential(nn.Linear(input_dim, HIDDEN), nn.ReLU()),
        nn.Sequential(nn.Linear(HIDDEN, HIDDEN), nn.ReLU()),
    ]


def _head(task_index: int) -> nn.Module:
    return nn.Linear(HIDDEN, SensorExperiment.tasks[task_index].output_dim)


@register_experiment  # needed for the allowed-module route; harmless with an entry point
class SensorExperiment(Experiment):
    """Temperature (regression), fault (binary) and operating mode (3 classes) from 8 sensors.

    Args:
        train_size: training samples.
        val_size: validation samples.
        test_size: test samples.
        seed: seed of the generated readings.
    """

    name: ClassVar[str] = "sensors"
    description: ClassVar[str] = (
        "Generated 8-sensor readings: temperature (regression), fault (binary) and operating "
        "mode (3 classes)."
    )
    tasks: ClassVar[tuple[Task, ...]] = (
        Task("temperature", "mse", "rmse", 1, ("mae",)),
        Task("fault", "bce_with_logits", "auc", 1, ("accuracy",)),
        Task("mode", "cross_entropy", "accuracy", NUM_MODES),
    )
    defaults: ClassVar[TrainingDefaults] = TrainingDefaults(
        epochs=5, batch_size=128, lr=3e-3, optimizer="adam", architecture="hard"
    )

    # The registry builds experiments with no arguments: every parameter needs a default.
    def __init__(
        self, train_size: int = 1_000, val_size: int = 200, test_size: int = 200, seed: int = 0
    ) -> None:
        for label, value in (
            ("train_size", train_size),
            ("val_size", val_size),
            ("test_size", test_size),
        ):
            if value < 1:
                raise ValueError(f"{label} must be >= 1, got {value}")
        self.sizes = (train_size, val_size, test_size)
        self.seed = seed

    def load_splits(self, data_dir: Path | None) -> DataSplits:
        # A real experiment reads its (already verified) `files` below data_dir here.
        train, val, test = (
            _split(np.random.default_rng([self.seed, index]), size)
            for index, size in enumerate(self.sizes)
        )
        return DataSplits(train, val, test)

    def network_parts(self, data: DataShapes) -> NetworkParts:
        # `data` holds the loaded splits' shapes: the first layer is as wide as the inputs.
        return NetworkParts(
            make_blocks=functools.partial(_blocks, data.input_dim),
            representation_dim=HIDDEN,
            make_head=_head,
            input_dim=data.input_dim,
            num_tasks=len(self.tasks),
        )
