"""``--trainer process``: training in a process of its own, the worker's process its bridge.

    worker process                                         training process
    asker ─JobQueue─▶ bridge (this module) ══pipe══▶ SlotRunner (mtlsearch.worker.trainer_link)
    teller ◀──────── bridge ◀══════════════════════ epoch reports, ended jobs
    teller ──verdicts═══════════════════════════════▶

The worker's process keeps everything that touches the database or the sampler (asker, teller,
heartbeat); the training process only trains: on a GPU its Python launches kernels without
sharing the interpreter lock with them. The bridge runs on the thread that called
`mtlsearch.worker.Worker.run` (where the runner runs with ``--trainer thread``): it answers the
runner's takes from the `JobQueue` (a study that ended meanwhile has its job told at once, as
the runner does), and hands its reports and ended jobs to the teller; the teller sends its
verdicts itself (`post_verdict`).

Nothing is lost on any kill:

* The worker's process killed: the kernel kills the training process too
  (``PR_SET_PDEATHSIG``); the worker's trials are lost trials, failed and re-run once by a peer
  (`mtlsearch.worker.stale`).
* The training process dies (killed, out of host memory, a crash in native code): every job
  handed to it and not ended is handed back (`storage.TrialRepository.hand_back`: failed and
  re-run once, as a lost worker's trials are), and a fresh training process takes over. After
  `MAX_DEATHS_IN_A_ROW` deaths with no trial ended between them, the worker stops with an
  error instead of feeding it more trials.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from optuna.trial import TrialState

from mtlsearch.worker.decisions import Decision, Outcome, stopped_outcome
from mtlsearch.worker.runner import startable
from mtlsearch.worker.trainer_link import (
    EPOCH,
    EXIT,
    FINISHED,
    GET,
    JOBS,
    RESIZE,
    STARTED,
    VERDICT,
    Ticket,
    TrainerOptions,
    train,
)
from storage.models import FailureKind

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from mtlsearch.worker.jobs import Job, JobQueue
    from mtlsearch.worker.teller import Teller

logger = logging.getLogger(__name__)

#: Deaths of the training process in a row, with no trial ended between, before the worker stops.
MAX_DEATHS_IN_A_ROW = 3
#: Seconds between two looks at the worker's stop event while the pipe is quiet.
POLL_S = 0.1


class TrainerDied(RuntimeError):
    """The training process died too often, or failed outside any trial."""


class TrainerProcess:
    """The bridge to the worker's training process (see the module docstring).

    Args:
        jobs: the asker's queue.
        teller: where reports and ended jobs go.
        options: what the training process needs.
        stop: the worker's stop event.
        starved: whether the asker's last look for work found none.
        on_start: called with each job as it starts training (the heartbeat's state).
    """

    def __init__(
        self,
        jobs: JobQueue,
        teller: Teller,
        options: TrainerOptions,
        stop: threading.Event,
        starved: Callable[[], bool],
        on_start: Callable[[Job], None],
    ) -> None:
        self.jobs = jobs
        self.teller = teller
        self.options = options
        self.stop = stop
        self.starved = starved
        self.on_start = on_start
        self._context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
        self._stop_flag = self._context.Event()
        self._send_lock = threading.Lock()
        self._conn: Connection | None = None
        self._process: BaseProcess | None = None
        #: Jobs handed to the training process and not ended, by key (the bridge's).
        self._handed: dict[int, Job] = {}
        self._asker_done = False

    @property
    def pid(self) -> int | None:
        """The training process's pid (None when none runs)."""
        process = self._process
        return process.pid if process is not None else None

    def start(self) -> None:
        """Start the training process (it imports and loads while the asker joins)."""
        if self._process is not None:
            return
        here, there = self._context.Pipe()
        process = self._context.Process(
            target=train,
            args=(there, self._stop_flag, self.options),
            name="mtlsearch-trainer",
            daemon=True,
        )
        process.start()
        there.close()
        self._conn, self._process = here, process
        logger.info("training process %d started", process.pid)

    def post_verdict(self, key: int, decision: Decision) -> None:
        """Send the teller's verdict on the job of ``key`` (on the teller's thread)."""
        with self._send_lock:
            if self._conn is None:
                return  # no training process: the job is being handed back
            with contextlib.suppress(OSError):  # it died: the bridge hands its jobs back
                self._conn.send((VERDICT, key, decision))

    def run(self) -> None:
        """Bridge until the training process has trained everything or the worker stops."""
        deaths = 0
        try:
            while True:
                self.start()
                ended_before = self.teller.trials_done
                death = self._bridge()
                if death is None:
                    return
                self._hand_back_all(death)
                if self.stop.is_set() or self._asker_done:
                    return
                deaths = 0 if self.teller.trials_done > ended_before else deaths + 1
                if deaths >= MAX_DEATHS_IN_A_ROW:
                    raise TrainerDied(
                        f"{death}, {deaths} times in a row with no trial ended between; "
                        "this worker stops"
                    )
                logger.error("%s; its trials are run again, a new training process starts", death)
        finally:
            self._close(kill=True)
            # Left on an error of this process: what the training process had is run again.
            self._hand_back_all("the worker lost its training process")

    # --- the bridge --------------------------------------------------------------------------

    def _bridge(self) -> str | None:
        """Serve the training process until it says EXIT (returns None; raises `TrainerDied`
        if it failed outside any trial) or dies (returns what happened to it)."""
        conn, process = self._conn, self._process
        assert conn is not None and process is not None
        while True:
            if self.stop.is_set():
                self._stop_flag.set()
            try:
                if not conn.poll(POLL_S):
                    if not process.is_alive():
                        return self._death()
                    continue
                batch = conn.recv()
            except (EOFError, OSError):
                return self._death()
            for message in batch:
                if message[0] == EXIT:
                    self._close()
                    self._exited(message[1])
                    return None
                self._serve(message)

    def _serve(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == GET:
            self._send(self._hand_out(message[1], message[2]))
        elif kind == EPOCH:
            _, round_, reports = message
            self.teller.epoch(round_, [(self._handed[k], r) for k, r in reports])
        elif kind == FINISHED:
            _, key, result, forced, diverged, round_ = message
            job = self._handed.pop(key)
            self.teller.finished(job, result, forced=forced, diverged=diverged, round_=round_)
        elif kind == STARTED:
            self.on_start(self._handed[message[1]])
        elif kind == RESIZE:
            self.jobs.resize(message[1])

    def _exited(self, error: str | None) -> None:
        """The training process said EXIT: raise if it failed outside any trial."""
        if error is not None:
            self._hand_back_all(f"the training process failed: {error}")
            raise TrainerDied(f"the training process failed: {error}")
        # Taken for a refill the stop came before: not started, told as the queue's.
        for job in self._handed.values():
            self.teller.finished(job, forced=stopped_outcome())
        self._handed.clear()

    def _hand_out(self, timeout_s: float, most: int) -> tuple[Any, ...]:
        """The answer to a GET: up to ``most`` jobs, waiting up to ``timeout_s`` for the
        first; whether the asker's last look found no work, and whether it has finished. A
        study ended meanwhile has its job told at once (`startable`)."""
        deadline = time.monotonic() + timeout_s
        tickets: list[Ticket] = []
        while len(tickets) < most:
            try:
                wait = max(0.0, deadline - time.monotonic()) if not tickets else 0.0
                job = self.jobs.get(timeout=wait) if wait else self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._asker_done = True
                break
            if not startable(self.teller, job):
                continue
            self._handed[job.key] = job
            experiment = job.study.experiment.name
            tickets.append(
                Ticket(
                    job.key,
                    job.label,
                    job.study.id,
                    experiment,
                    job.config,
                    number=job.number,
                    population=job.population,
                )
            )
        return (JOBS, tickets, self.starved(), self._asker_done)

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            assert self._conn is not None
            with contextlib.suppress(OSError):  # it died: the next read says so
                self._conn.send(message)

    def _death(self) -> str:
        process = self._process
        assert process is not None
        process.join(timeout=10)
        code = process.exitcode
        self._close()
        if code is not None and code < 0:
            return f"the training process was killed by {signal.Signals(-code).name}"
        return f"the training process exited with code {code}"

    def _hand_back_all(self, why: str) -> None:
        """Every job the training process had and did not end: run again elsewhere."""
        for job in self._handed.values():
            outcome = Outcome(TrialState.FAIL, reason=why, failure_kind=FailureKind.LOST_WORKER)
            self.teller.finished(job, forced=outcome)
        self._handed.clear()

    def _close(self, kill: bool = False) -> None:
        """Forget the training process once it has exited (``kill``: the bridge is leaving
        early, on an error: nothing may train on without it)."""
        with self._send_lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        process, self._process = self._process, None
        if process is not None:
            process.join(timeout=0 if kill else 10)
            if process.is_alive():
                process.kill()
                process.join()


__all__ = ["MAX_DEATHS_IN_A_ROW", "TrainerDied", "TrainerProcess"]
