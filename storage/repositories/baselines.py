"""Baselines: single-task metrics of an experiment, cached by a hash of their training config.

Δm% compares every trial with these; computing them costs T trainings, so they are shared by
all studies (and workers) that use the same experiment and baseline config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from storage.models import BaselineRecord, utcnow
from storage.repositories._common import require_json, upsert


@dataclass(frozen=True, slots=True)
class BaselineInfo:
    """Single-task baseline metrics: task name → metric value."""

    experiment: str
    config_key: str
    metrics: dict[str, float]
    created_at: datetime


class BaselineRepository:
    """Reads and writes ``mtl_baselines`` inside the caller's session (the caller commits).

    Args:
        session: from `Database.session()`.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, experiment: str, config_key: str) -> BaselineInfo | None:
        """The baseline of (`experiment`, `config_key`), or None if not computed yet."""
        record = self._session.get(BaselineRecord, (experiment, config_key), populate_existing=True)
        if record is None:
            return None
        return BaselineInfo(
            experiment=record.experiment,
            config_key=record.config_key,
            metrics={task: float(value) for task, value in record.metrics.items()},
            created_at=record.created_at,
        )

    def put(self, experiment: str, config_key: str, metrics: Mapping[str, float]) -> BaselineInfo:
        """Store (or replace) the baseline metrics of (`experiment`, `config_key`).

        Raises:
            ValueError: empty key, no metrics, or a value that is not a finite number.
        """
        if not experiment or not config_key:
            raise ValueError(
                f"experiment and config_key must be set, got {experiment=}, {config_key=}"
            )
        if not metrics:
            raise ValueError(f"metrics must name at least one task, got {dict(metrics)!r}")
        values = {str(task): float(value) for task, value in metrics.items()}
        require_json("metrics", values)
        now = utcnow()
        upsert(
            self._session,
            BaselineRecord,
            {
                "experiment": experiment,
                "config_key": config_key,
                "metrics": values,
                "created_at": now,
            },
            keys=("experiment", "config_key"),
        )
        return BaselineInfo(
            experiment=experiment, config_key=config_key, metrics=values, created_at=now
        )


__all__ = ["BaselineInfo", "BaselineRepository"]
