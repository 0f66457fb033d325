"""What training reports: per-epoch reports and the trial's result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mtl_core.config import ResolvedConfig


@dataclass
class EpochReport:
    """One epoch of one trial.

    Args:
        epoch: 1-based epoch number.
        train_loss: epoch-mean unscaled train loss per task.
        val_metrics: each task's main metric on the validation split.
        val_extra: further metrics, keyed ``"task/metric"``.
        weights: the strategy's mean weights over the epoch (Σ = number of tasks).
        elapsed_s: seconds since the trial started.
    """

    epoch: int
    train_loss: dict[str, float]
    val_metrics: dict[str, float]
    val_extra: dict[str, float]
    weights: dict[str, float]
    elapsed_s: float


@dataclass
class TrialResult:
    """The outcome of one trial.

    ``val_metrics`` / ``test_metrics`` are measured after the last epoch that ran.
    ``stop_reason`` is None for a trial that ran all its epochs. ``num_slots`` is the K of the
    batched pass it trained in: with its config (seed, ``data_seed``) it determines the run,
    since a slot's arithmetic depends on K but not on what the other slots hold
    (``BatchedRun([config], num_slots=K)`` retrains it alone, bit for bit on CPU).
    """

    config: ResolvedConfig
    epochs_run: int
    val_metrics: dict[str, float]
    test_metrics: dict[str, float]
    test_extra: dict[str, float]
    history: list[EpochReport] = field(default_factory=list)
    stop_reason: str | None = None
    duration_s: float = 0.0
    num_slots: int = 1

    @property
    def final_weights(self) -> dict[str, float]:
        """The weights the strategy applied in the last epoch (its mean; Σ = tasks)."""
        return self.history[-1].weights if self.history else {}

    @property
    def weights_trajectory(self) -> list[dict[str, float]]:
        """The weights the strategy applied, one epoch-mean per epoch that ran (Σ = tasks)."""
        return [dict(report.weights) for report in self.history]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["config"] = self.config.model_dump()
        out["final_weights"] = self.final_weights
        return out
