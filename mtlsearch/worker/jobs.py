"""What the worker's stages hand each other: a `Job` (one asked trial), the asker's bounded
`JobQueue` of them, and the epoch reports the runner hands the teller; `TrainingJob`, what of
a job the runner uses (a `Job`, or its copy in the training process)."""

from __future__ import annotations

import queue
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import optuna

from mtlsearch.search.population import PopulationPlan

if TYPE_CHECKING:
    from mtl_core.config import TrialConfig
    from mtl_core.experiments import Experiment
    from mtl_core.results import EpochReport
    from mtlsearch.worker.studies import StudyContext


class JobStudy(Protocol):
    """What the runner uses of a job's study."""

    @property
    def id(self) -> str: ...

    @property
    def experiment(self) -> Experiment: ...


class TrainingJob(Protocol):
    """What the runner uses of a job: a `Job` in the worker's process, a
    `mtlsearch.worker.trainer_link.TicketJob` in a training process of its own."""

    @property
    def study(self) -> JobStudy: ...

    @property
    def config(self) -> TrialConfig: ...

    @property
    def key(self) -> int: ...

    @property
    def label(self) -> str: ...

    @property
    def number(self) -> int | None: ...

    @property
    def population(self) -> PopulationPlan | None: ...


@dataclass(eq=False)
class Job:
    """One run to train: its study, its Optuna trial, the config to train and its row in
    ``mtl_trials`` (`storage.TrialRepository`), which holds its budget slot.

    A confirmation run (a configuration of a finished search retrained at another seed) has
    no Optuna trial: ``trial`` is None, nothing is reported to a pruner or told to Optuna.
    Compared by identity: a job is one run in flight, however equal two configs are.
    """

    study: StudyContext
    trial: optuna.Trial | None
    config: TrialConfig
    epochs: int
    row_id: int

    @property
    def key(self) -> int:
        """The row's id (unique across studies): verdicts are keyed by it."""
        return self.row_id

    @property
    def number(self) -> int | None:
        """The Optuna trial's number (None for a confirmation run)."""
        return self.trial.number if self.trial is not None else None

    @property
    def population(self) -> PopulationPlan | None:
        """The study's population plan where it trains one (confirmation runs are not
        members)."""
        if self.trial is None or self.study.spec.population is None:
            return None
        return PopulationPlan(self.study.spec, self.study.baselines)

    @property
    def label(self) -> str:
        """How logs name it: ``trial 7`` or ``confirmation run 31 (seed ...)``."""
        if self.trial is None:
            seed = self.config.seed if self.config is not None else "?"
            return f"confirmation run {self.row_id} (seed {seed})"
        return f"trial {self.trial.number}"


@dataclass(frozen=True)
class EpochItem:
    """One slot's report of one epoch, for the teller."""

    job: Job
    report: EpochReport


class JobQueue(queue.Queue[Job | None]):
    """The asker's bounded queue of asked jobs; None: the asker has finished."""

    def resize(self, maxsize: int) -> None:
        """Hold up to ``maxsize`` jobs (the K of the current run: one batch ahead)."""
        with self.mutex:
            self.maxsize = maxsize
            self.not_full.notify_all()

    def room(self) -> int:
        """How many jobs a put would take now without blocking (at least 1)."""
        with self.mutex:
            return max(1, self.maxsize - self._qsize()) if self.maxsize > 0 else 1

    def wait_for_room(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until a put would not block; True if it would not."""
        with self.not_full:
            if 0 < self.maxsize <= self._qsize():
                self.not_full.wait(timeout)
            return not 0 < self.maxsize <= self._qsize()
