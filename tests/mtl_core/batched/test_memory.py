"""auto_batch_size picks at least one trial."""

from __future__ import annotations

from pathlib import Path

import torch

from mtl_core.batched import auto_batch_size
from mtl_core.config import TrialConfig


def test_auto_batch_size_on_cpu_is_at_least_one() -> None:
    config = TrialConfig(experiment="synthetic")
    k = auto_batch_size("synthetic", config, "cpu")
    assert 1 <= k <= 1024


def test_auto_batch_size_respects_the_cap(data_dir: Path) -> None:
    config = TrialConfig(experiment="adult", max_train_samples=512)
    assert auto_batch_size("adult", config, torch.device("cpu"), data_dir=data_dir, max_k=3) <= 3
