"""Train one trial from a `TrialConfig` (placeholder signature; body in progress)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mtl_core.config import TrialConfig
from mtl_core.results import EpochReport, TrialResult

EpochCallback = Callable[[EpochReport], None]


def train_trial(
    config: TrialConfig,
    data_dir: Path | str | None = None,
    on_epoch: EpochCallback | None = None,
    progress: bool = False,
) -> TrialResult:
    """Train one trial. ``on_epoch`` may raise `TrialStopped` to prune; NaN raises
    `TrainingDiverged`; bad names / weights raise `ConfigError` (one line, valid choices)."""
    raise NotImplementedError
