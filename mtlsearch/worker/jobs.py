"""What the worker's threads hand each other: a `Job` (one asked trial) and its epoch reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna

if TYPE_CHECKING:
    from mtl_core.config import TrialConfig
    from mtl_core.results import EpochReport
    from mtlsearch.worker.studies import StudyContext


@dataclass(eq=False)
class Job:
    """One asked trial: its study, the Optuna trial and the config to train.

    Compared by identity: a job is one trial in flight, however equal two configs are.
    """

    study: StudyContext
    trial: optuna.Trial
    config: TrialConfig
    epochs: int

    @property
    def key(self) -> int:
        """The trial's storage id (unique across studies): verdicts are keyed by it."""
        return self.trial._trial_id


@dataclass(frozen=True)
class EpochItem:
    """One slot's report of one epoch, for the teller."""

    job: Job
    report: EpochReport
