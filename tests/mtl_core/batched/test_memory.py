"""The CPU memory estimate and the K that `auto_batch_size` derives from it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mtl_core.batched.memory as memory
from mtl_core.batched import auto_batch_size
from mtl_core.batched.memory import estimate_trial_bytes
from mtl_core.config import TrialConfig


def mlp(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 2))


def test_estimate_counts_parameter_copies_and_activations() -> None:
    model, x = mlp(16), torch.zeros(4, 8)
    params = (8 * 16 + 16 + 16 * 2 + 2) * 4
    activations = (4 * 16 + 4 * 16 + 4 * 2) * 4
    expected = memory.PARAM_COPIES * params + memory.ACTIVATION_FACTOR * activations
    assert estimate_trial_bytes(model, x) == expected


def test_estimate_grows_with_the_batch_size_and_the_width() -> None:
    x = torch.zeros(4, 8)
    assert estimate_trial_bytes(mlp(16), torch.zeros(64, 8)) > estimate_trial_bytes(mlp(16), x)
    assert estimate_trial_bytes(mlp(64), x) > estimate_trial_bytes(mlp(16), x)


def fixed_ram(monkeypatch: pytest.MonkeyPatch, ram: int, per_trial: int) -> None:
    monkeypatch.setattr(memory, "_available_ram", lambda: ram)
    monkeypatch.setattr(memory, "estimate_trial_bytes", lambda model, x: per_trial)


CONFIG = TrialConfig(experiment="synthetic", max_train_samples=200)


def test_k_is_what_fits_in_the_available_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    fixed_ram(monkeypatch, ram=1000, per_trial=10)
    assert auto_batch_size("synthetic", CONFIG, "cpu", safety=0.5) == 50
    fixed_ram(monkeypatch, ram=1000, per_trial=40)
    assert auto_batch_size("synthetic", CONFIG, "cpu", safety=0.5) == 12  # larger trials, fewer


def test_k_is_clamped_to_one_and_max_k(monkeypatch: pytest.MonkeyPatch) -> None:
    fixed_ram(monkeypatch, ram=1000, per_trial=10)
    assert auto_batch_size("synthetic", CONFIG, "cpu", safety=1.0, max_k=7) == 7
    fixed_ram(monkeypatch, ram=1000, per_trial=10**6)
    assert auto_batch_size("synthetic", CONFIG, "cpu") == 1


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="safety"):
        auto_batch_size("synthetic", CONFIG, "cpu", safety=0.0)
    with pytest.raises(ValueError, match="max_k"):
        auto_batch_size("synthetic", CONFIG, "cpu", max_k=0)
