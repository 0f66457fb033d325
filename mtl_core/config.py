"""The plain, typed configuration of one training trial."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

OptimizerName = Literal["adam", "adamw", "sgd"]


class TrialConfig(BaseModel):
    """Everything needed to train one trial; JSON-serialisable (stored with each trial).

    Fields left ``None`` take the experiment's defaults (`Experiment.defaults`).
    ``weights`` maps task names to fixed loss weights; tasks not named get 1.0.
    """

    model_config = ConfigDict(extra="forbid")

    experiment: str
    strategy: str = "fixed"
    strategy_params: dict[str, Any] = Field(default_factory=dict)
    weights: dict[str, float] = Field(default_factory=dict)
    schedule: str = "joint"
    schedule_params: dict[str, Any] = Field(default_factory=dict)
    architecture: str | None = None
    architecture_params: dict[str, Any] = Field(default_factory=dict)
    optimizer: OptimizerName | None = None
    lr: float | None = Field(None, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    epochs: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    grad_clip: float | None = Field(None, gt=0)
    seed: int = Field(0, description="Seeds the model's initialisation and the strategy's draws.")
    data_seed: int | None = Field(
        None,
        description="Seeds the order of training batches (None: same as seed). Trials trained "
        "together in one batched pass share it.",
    )
    device: str = "cpu"
    max_train_samples: int | None = Field(
        None, ge=1, description="Train on the first N training samples only (quick runs)."
    )

    @field_validator("weights")
    @classmethod
    def _weights_are_non_negative(cls, weights: dict[str, float]) -> dict[str, float]:
        for task, value in weights.items():
            if not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"weight of task {task!r} must be a finite number >= 0, got {value}"
                )
        return weights


class ResolvedConfig(BaseModel):
    """A `TrialConfig` with the experiment's defaults filled in (what actually ran)."""

    model_config = ConfigDict(extra="forbid")

    experiment: str
    strategy: str
    strategy_params: dict[str, Any]
    weights: dict[str, float]
    schedule: str
    schedule_params: dict[str, Any]
    architecture: str
    architecture_params: dict[str, Any]
    optimizer: OptimizerName
    lr: float
    weight_decay: float
    epochs: int
    batch_size: int
    grad_clip: float | None
    seed: int
    data_seed: int
    device: str
    max_train_samples: int | None
