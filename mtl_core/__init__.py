"""mtl_core: train multi-task PyTorch models under any loss-weighting strategy.

Registries: `mtl_core.weighting.STRATEGIES`, `mtl_core.architectures.ARCHITECTURES`,
`mtl_core.schedules.SCHEDULES`, `mtl_core.experiments.EXPERIMENTS`, and the task losses and
metrics in `mtl_core.tasks`. Train one trial with `train_trial(TrialConfig(...))`; retrain a
recorded trial of a study exactly with `retrain_trial(record)`.
"""

from __future__ import annotations

from mtl_core.config import ResolvedConfig, TrialConfig
from mtl_core.errors import (
    ConfigError,
    DataError,
    MTLError,
    TrainingDiverged,
    TrialStopped,
    UnknownNameError,
)
from mtl_core.production import (
    MultiTaskLoss,
    build_loss_from_best,
    build_model_from_best,
    effective_loss_weights,
)
from mtl_core.reproduce import Reproduction, retrain_trial, trial_config_from_record
from mtl_core.results import EpochReport, TrialResult
from mtl_core.trainer import train_trial

__all__ = [
    "ConfigError",
    "DataError",
    "EpochReport",
    "MTLError",
    "MultiTaskLoss",
    "Reproduction",
    "ResolvedConfig",
    "TrainingDiverged",
    "TrialConfig",
    "TrialResult",
    "TrialStopped",
    "UnknownNameError",
    "build_loss_from_best",
    "build_model_from_best",
    "effective_loss_weights",
    "retrain_trial",
    "train_trial",
    "trial_config_from_record",
]
