"""Train one trial of a multi-task experiment from a plain `TrialConfig`.

One trial is the one trainer (`mtl_core.batched.BatchedRun`, via `train_batch`) at K = 1: the same
seeding, data order, strategies, failure handling and evaluation as K trials batched, so a
trial's result does not depend on how it was trained. The helpers that resolve a config and
prepare its data live in `mtl_core.trial_setup` and are re-exported here.
"""

from __future__ import annotations

from pathlib import Path

from mtl_core.batched import DIVERGED, train_batch
from mtl_core.config import TrialConfig
from mtl_core.errors import TrainingDiverged
from mtl_core.experiments import DataSplits
from mtl_core.results import TrialResult
from mtl_core.trial_setup import (
    EpochCallback,
    compute_metrics,
    prepare_data,
    resolve_config,
    resolve_device,
)

__all__ = [
    "EpochCallback",
    "compute_metrics",
    "prepare_data",
    "resolve_config",
    "resolve_device",
    "train_trial",
]


def train_trial(
    config: TrialConfig,
    data_dir: Path | str | None = None,
    on_epoch: EpochCallback | None = None,
    progress: bool = False,
    data: DataSplits | None = None,
) -> TrialResult:
    """Train one trial and return its validation and test metrics.

    Args:
        config: the trial (`TrialConfig`); unset fields take the experiment's defaults.
        data_dir: where the experiment's data files are (the `data_dir` setting).
        on_epoch: called after every epoch with its `EpochReport`; it may raise
            `TrialStopped` to end the trial early (pruning): the result then carries
            ``stop_reason`` and the metrics of the last epoch that ran.
        progress: show a rich progress bar.
        data: already prepared splits on the right device (a worker reuses them across trials).

    Raises:
        ConfigError: unknown names, bad weights or hyper-parameters (one line, valid choices).
        DataError: a missing or corrupt data file.
        TrainingDiverged: a task loss (or the strategy's step) became NaN or infinite.
    """
    epoch_callback = None if on_epoch is None else lambda _index, report: on_epoch(report)
    (result,) = train_batch([config], data_dir, epoch_callback, progress=progress, data=data)
    if result.stop_reason is not None and result.stop_reason.startswith(DIVERGED):
        raise TrainingDiverged(result.stop_reason.removeprefix(DIVERGED))
    return result
