"""The training process's side of ``--trainer process``: a `SlotRunner` whose queue and teller
are one pipe to the worker's process (`mtlsearch.worker.trainer_process`).

The training process holds no database connection and runs no sampler: it receives jobs and
verdicts and sends epoch reports and ended jobs, so the asker's and the teller's Python never
takes the interpreter lock from training.

Messages, each a tuple whose first item is one of the constants below:

    trainer → worker   GET (timeout_s, most) · RESIZE (k) · STARTED (key)
                       EPOCH (round, reports) · FINISHED (key, result, forced, diverged, round)
                       EXIT (error or None)
    worker → trainer   JOBS (tickets, starved, no_more) · VERDICT (key, decision)

The training process sends them in lists: FINISHED and STARTED wait in the link and go with
the next GET, EPOCH, RESIZE or EXIT, so that the end of a batch (K FINISHED and a GET) is one
message. A GET is answered by one JOBS: the jobs the queue had, up to ``most``, after waiting
up to ``timeout_s`` for the first; the link keeps the extra ones for the runner's next takes,
so a refill of K free slots costs one round trip, not K. (Each message wakes the worker's
process, whose bridge thread then waits for the interpreter lock its asker and teller hold
most of the time.) VERDICTs come at any time (the teller posts them as it decides) and wait in
the link until the runner reads them at an epoch boundary.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import queue
import signal
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mtl_core.config import TrialConfig
    from mtl_core.experiments import DataSplits, Experiment
    from mtl_core.results import EpochReport, TrialResult
    from mtlsearch.search.population import PopulationPlan
    from mtlsearch.worker.decisions import Decision, Outcome

logger = logging.getLogger(__name__)

# trainer → worker
GET, RESIZE, STARTED, EPOCH, FINISHED = "get", "resize", "started", "epoch", "finished"
EXIT = "exit"
# worker → trainer
JOBS, VERDICT = "jobs", "verdict"

#: Linux's ``prctl`` option that has the kernel signal a process when its parent dies.
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Ticket:
    """What the training process gets of a `mtlsearch.worker.jobs.Job` (picklable)."""

    key: int
    label: str
    study_id: str
    experiment: str
    config: TrialConfig
    number: int | None = None
    population: PopulationPlan | None = None


@dataclass(frozen=True)
class TicketStudy:
    id: str
    experiment: Experiment


@dataclass(eq=False)
class TicketJob:
    """A ticket in the training process, with its experiment loaded (a `TrainingJob`)."""

    ticket: Ticket
    study: TicketStudy

    @property
    def key(self) -> int:
        return self.ticket.key

    @property
    def label(self) -> str:
        return self.ticket.label

    @property
    def config(self) -> TrialConfig:
        return self.ticket.config

    @property
    def number(self) -> int | None:
        return self.ticket.number

    @property
    def population(self) -> PopulationPlan | None:
        return self.ticket.population


@dataclass(frozen=True)
class TrainerOptions:
    """What the training process needs to know (picklable; `TrainerProcess` builds it).

    ``setup``: a picklable callable run first (benchmarks put a stand-in trainer in place);
    it comes from the worker's own Python caller, never from the database or a request.
    """

    device: str
    batch: int | str
    data_dir: Path | str | None
    allowed_experiment_modules: tuple[str, ...]
    log_level: int
    setup: Callable[[], None] | None = None


class _VerdictInbox:
    """``teller.verdicts`` in the training process: the verdicts the worker's process sent.

    They arrive on the one pipe: read there while a GET waits for its answer (`add`), or
    polled when the runner looks between epochs (`get_nowait`).
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._received: deque[tuple[int, Decision]] = deque()

    def add(self, key: int, decision: Decision) -> None:
        self._received.append((key, decision))

    def get_nowait(self) -> tuple[int, Decision]:
        while self.conn.poll(0):  # nothing is asked now: only verdicts can be waiting
            message = self.conn.recv()
            self.add(message[1], message[2])
        if not self._received:
            raise queue.Empty
        return self._received.popleft()


class TrainerLink:
    """The runner's queue (`JobSource`) and teller (`Reports`) in the training process."""

    def __init__(self, conn: Connection, k: int) -> None:
        self.conn = conn
        #: What the runner reads at each epoch boundary (``teller.verdicts.get_nowait()``).
        self.verdicts = _VerdictInbox(conn)
        self._jobs: deque[TicketJob] = deque()  # received, not taken yet
        self._no_more = False
        self._starved = False
        self._k = k
        self._studies: dict[tuple[str, str], TicketStudy] = {}
        self._outbox: list[tuple[Any, ...]] = []  # FINISHED and STARTED not sent yet

    def send(self, message: tuple[Any, ...]) -> None:
        """Send ``message`` after what waits in the outbox, as one list."""
        self._outbox.append(message)
        batch, self._outbox = self._outbox, []
        self.conn.send(batch)

    # --- JobSource ---------------------------------------------------------------------------

    def get(self, block: bool = True, timeout: float | None = None) -> TicketJob | None:
        if not self._jobs and not self._no_more:
            self.send((GET, (timeout or 0.0) if block else 0.0, self._k))
            while (message := self.conn.recv())[0] == VERDICT:
                self.verdicts.add(message[1], message[2])
            _, tickets, self._starved, self._no_more = message
            self._jobs.extend(self._job(ticket) for ticket in tickets)
        if self._jobs:
            return self._jobs.popleft()
        if self._no_more:
            return None
        raise queue.Empty

    def get_nowait(self) -> TicketJob | None:
        return self.get(block=False)

    def resize(self, maxsize: int) -> None:
        self._k = maxsize
        self.send((RESIZE, maxsize))

    def starved(self) -> bool:
        """What the last answer said of the asker's last look for work."""
        return self._starved

    def started(self, job: TicketJob) -> None:
        self._outbox.append((STARTED, job.key))

    def _job(self, ticket: Ticket) -> TicketJob:
        from mtl_core.experiments import get_experiment

        key = (ticket.study_id, ticket.experiment)
        study = self._studies.get(key)
        if study is None:
            study = self._studies[key] = TicketStudy(
                ticket.study_id, get_experiment(ticket.experiment)
            )
        return TicketJob(ticket, study)

    # --- Reports -----------------------------------------------------------------------------

    def epoch(self, round_: int, reports: Sequence[tuple[TicketJob, EpochReport]]) -> None:
        self.send((EPOCH, round_, [(job.key, report) for job, report in reports]))

    def finished(
        self,
        job: TicketJob,
        result: TrialResult | None = None,
        *,
        forced: Outcome | None = None,
        diverged: str | None = None,
        round_: int | None = None,
    ) -> None:
        self._outbox.append((FINISHED, job.key, result, forced, diverged, round_))

    def ended(self, study_id: str) -> None:
        """Always None: the worker's process checks a study's status as it hands a job out."""
        return None


def _die_with_parent() -> None:
    """Have the kernel SIGKILL this process when the worker's process dies (Linux), so that a
    killed worker leaves no training process behind."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before the prctl
        os._exit(1)


def train(conn: Connection, stop: Event, options: TrainerOptions) -> None:
    """The training process's main (``multiprocessing`` target): train until the worker's
    process has no more jobs or asks it to stop, then say EXIT."""
    _die_with_parent()
    # Ctrl-C reaches the whole process group; the worker's process decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=options.log_level,
        format="%(asctime)s %(levelname)s %(name)s [trainer]: %(message)s",
    )
    error: str | None = None
    link = TrainerLink(conn, options.batch if isinstance(options.batch, int) else 1)
    try:
        if options.setup is not None:
            options.setup()
        from mtl_core.experiments import load_plugins
        from mtlsearch.worker.runner import SlotRunner
        from mtlsearch.worker.studies import DataCache

        load_plugins(list(options.allowed_experiment_modules))
        data = DataCache(options.data_dir)

        def data_for(job: TicketJob) -> DataSplits:
            return data.get(job.study.experiment, job.config.max_train_samples, options.device)

        runner: SlotRunner[TicketJob] = SlotRunner(
            link,
            link,
            data_for,
            options.device,
            options.batch,
            stop,
            starved=link.starved,
            on_start=link.started,
        )
        runner.run()
    except (EOFError, BrokenPipeError):
        return  # the worker's process is gone: nothing to report to
    except BaseException as exc:
        logger.exception("the training process failed")
        error = f"{type(exc).__name__}: {exc}"
    with contextlib.suppress(OSError):  # the worker's process may be gone
        link.send((EXIT, error))


__all__ = ["Ticket", "TicketJob", "TrainerLink", "TrainerOptions", "train"]
