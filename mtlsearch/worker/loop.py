"""The worker: a pipeline of three threads around one bounded queue.

One `Worker` per process and device (``mtlsearch worker``). The database is its only contact
with the rest of mtlsearch; see docs/walkthrough.md for running many of them.

    asker thread ──JobQueue (capacity K)──▶ training thread ──inbox──▶ teller thread
    (mtlsearch.worker.asker)               (mtlsearch.worker.runner)   (mtlsearch.worker.teller)
                                    ◀──verdicts──

* The **asker** (`~mtlsearch.worker.asker.Asker`) does the maintenance (lost trials of dead
  workers, time budgets), picks a study, and for as many trials as the queue has room for
  reserves budget slots (``mtl_trials`` rows), asks Optuna (which reads the study once per
  batch: `storage.optuna_snapshot.SnapshotStorage`), suggests the configs and records the
  trials in their rows, a few transactions per batch (`mtlsearch.worker.asking`); it puts the
  `Job` s into the bounded queue, staying one batch ahead of training.
* The **training thread** (the caller of `Worker.run`; `~mtlsearch.worker.runner.SlotRunner`)
  trains every job in a `mtl_core.batched.BatchedRun` of K slots (K = 1 included), refilling
  free slots from the queue without waiting, and hands each epoch's reports and each ended job
  to the teller. It does no storage work.
* The **teller** (`~mtlsearch.worker.teller.Teller`) reports epochs to Optuna, reads the study
  status (cancels), decides prune / stop / cancel (`mtlsearch.worker.decisions`) and posts the
  verdicts back, and records every ended job in order (`Teller.record_outcome`: the row's
  outcome, which gives a FAIL's slot back in the same transaction, then Optuna's user
  attributes and ``tell``, the failure streak and the completion check).
* With ``trainer="process"`` (what ``mtlsearch worker`` runs) the runner lives in a training
  process of its own (`mtlsearch.worker.trainer_process`), which holds no database connection
  and shares no interpreter lock with the asker and the teller; the calling thread is then the
  bridge that hands it jobs and passes its reports on. A training process that dies has its
  jobs handed back (run again once) and is replaced; one whose worker dies is killed with it.
* The heartbeat thread (`~mtlsearch.worker.heartbeat.Heartbeat`) beats for the worker row,
  which is what keeps the worker's trials alive; it is the only writer of the worker row
  until the final ``stopped``.

Each piece of shared state has one owner thread (named in each module's docstring); the
threads talk through the queue, the teller's inbox and its verdicts.

Budget: the rules are storage's (`storage.TrialRepository`, conditional SQL). ``reserve_many``
takes slots of the study's ``n_trials`` with their rows before the ``ask`` s; a trial that ends
FAIL (its own failure, a cancel, a worker stop, or a dead worker's trial failed by
`~mtlsearch.worker.stale.fail_lost_trials`) gives its slot back in the transaction that fails
its row, so the study ends with exactly ``n_trials`` COMPLETE + PRUNED trials.
``complete_if_done`` marks the study completed (and stores its ``best`` artifact) once its
budget is met and no row of any worker is reserved or running. The sampler asks up to a batch
ahead of the tells (TPE, with constant liar, sees that many finished trials fewer).

Fairness: every batch of asks starts with ``StudyRepository.pick_for_worker``, the running
study with budget left served least recently, so concurrent studies take turns batch by batch
(trial by trial at K = 1).

Stopping (`Worker.request_stop`, SIGTERM/SIGINT in the CLI): the current epoch finishes; a
trial that still has epochs to go is told FAIL ``worker stopped`` and its slot is released, a
trial in its last epoch finishes normally; every job still in the queue is told FAIL ``worker
stopped``; the teller has told everything before `Worker.run` returns; then the worker row is
marked stopped. A worker killed outright leaves its rows running and its worker row silent:
after ``Settings.stale_after_s`` another worker fails them, gives their slots back and re-queues
each asked trial once (`mtlsearch.worker.stale`).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from mtlsearch.settings import Settings, get_settings
from mtlsearch.worker.asker import Asker
from mtlsearch.worker.decisions import Decision
from mtlsearch.worker.heartbeat import Heartbeat
from mtlsearch.worker.jobs import Job, JobQueue
from mtlsearch.worker.outage import DatabaseOutage
from mtlsearch.worker.runner import SlotRunner
from mtlsearch.worker.studies import DataCache, StudyContext, unservable
from mtlsearch.worker.teller import Teller
from mtlsearch.worker.trainer_link import TrainerOptions
from mtlsearch.worker.trainer_process import TrainerProcess
from storage import Database, StudyInfo, WorkerRepository, WorkerStatus

if TYPE_CHECKING:
    from mtl_core.experiments import DataSplits

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker runs.

    Args:
        device: where it trains (``cpu``, ``cuda:0``, ...).
        batch: trials trained together: 1 (one by one), K, or ``"auto"``.
        max_trials: stop after starting this many trials (None: no limit).
        idle_exit_s: exit after this many seconds without work (None: wait forever).
        data_dir: the data sets (default ``Settings.data_dir``).
        heartbeat_s: seconds between heartbeats (default ``Settings.worker_heartbeat_s``).
        maintenance_s: seconds between passes over all running studies (stale trials,
            completion, time budgets); default: the heartbeat interval.
        max_consecutive_failures: a study whose trials fail this many times in a row on this
            worker, with no COMPLETE or PRUNED in between, is marked failed. One epoch of a run
            counts once however many of the study's trials failed in it, and not at all when
            one of them trained on healthy (see `mtlsearch.worker.decisions.next_streak`).
        idle_sleep_s: first and longest sleep between two looks for work (doubling).
        worker_id: default ``<hostname>-<pid>-<6 hex>``.
        trainer: ``"thread"``: train on the thread that calls `Worker.run`, in this process
            (the default of this API: tests, notebooks); ``"process"``: train in a process of
            its own, which holds no database connection and shares no interpreter lock with
            the asker and the teller (`mtlsearch.worker.trainer_process`; the default of
            ``mtlsearch worker``).
        trainer_setup: with ``trainer="process"``, a picklable callable the training process
            runs first (benchmarks put a stand-in trainer in place there).
    """

    device: str = "cpu"
    batch: int | str = 1
    max_trials: int | None = None
    idle_exit_s: float | None = None
    data_dir: Path | None = None
    heartbeat_s: float | None = None
    maintenance_s: float | None = None
    max_consecutive_failures: int = 5
    idle_sleep_s: tuple[float, float] = (0.2, 5.0)
    worker_id: str | None = None
    trainer: Literal["thread", "process"] = "thread"
    trainer_setup: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        if self.trainer not in ("thread", "process"):
            raise ValueError(f"trainer must be 'thread' or 'process', got {self.trainer!r}")
        if self.batch != "auto" and (not isinstance(self.batch, int) or self.batch < 1):
            raise ValueError(f"batch must be an integer >= 1 or 'auto', got {self.batch!r}")
        if self.max_trials is not None and self.max_trials < 1:
            raise ValueError(f"max_trials must be >= 1, got {self.max_trials=}")
        if self.idle_exit_s is not None and self.idle_exit_s < 0:
            raise ValueError(f"idle_exit_s must be >= 0, got {self.idle_exit_s=}")
        for name in ("heartbeat_s", "maintenance_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if self.max_consecutive_failures < 1:
            raise ValueError(
                f"max_consecutive_failures must be >= 1, got {self.max_consecutive_failures=}"
            )
        low, high = self.idle_sleep_s
        if not 0 < low <= high:
            raise ValueError(f"idle_sleep_s must be 0 < first <= longest, got {self.idle_sleep_s}")


class Worker:
    """Trains the trials of the running studies of one database until stopped.

    Args:
        database: the process's `Database` (``storage.get_database(url)``).
        options: how to run.
        settings: heartbeat and data defaults (default: the process's `Settings`).
    """

    def __init__(
        self,
        database: Database,
        options: WorkerOptions | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.database = database
        self.options = options or WorkerOptions()
        self.settings = settings or get_settings()
        self.device = self.options.device
        data_dir = self.options.data_dir or self.settings.data_dir
        self.data = DataCache(data_dir)
        #: Experiments this worker cannot serve, with why (their data is missing or corrupt
        #: here): found at registration, or when a trial's data fails to load. Written by the
        #: registering and teller threads, read by the asker (a dict: one item at a time).
        self.unavailable: dict[str, str] = {}
        self.heartbeat_s = self.options.heartbeat_s or self.settings.worker_heartbeat_s
        self.maintenance_s = self.options.maintenance_s or self.heartbeat_s
        self.id = self.options.worker_id or ""
        self._stop = threading.Event()
        self._heartbeat: Heartbeat | None = None
        batch = self.options.batch
        self.jobs = JobQueue(maxsize=batch if isinstance(batch, int) else 1)
        #: Writes wait out a database that is away (restart, network cut) instead of failing.
        self.outage = DatabaseOutage(self._stop)
        self.trainer: TrainerProcess | None = None
        self.teller = Teller(
            database,
            self.options.max_consecutive_failures,
            self.outage,
            on_setup_failure=self._stop_serving,
            on_verdict=self._send_verdict if self.options.trainer == "process" else None,
        )
        self.asker = Asker(
            database,
            self.options,
            jobs=self.jobs,
            teller=self.teller,
            stop=self._stop,
            outage=self.outage,
            unavailable=self.unavailable,
            worker_id=lambda: self.id,
            heartbeat=lambda: self._heartbeat,
            maintenance_s=self.maintenance_s,
            stale_after_s=self.settings.stale_after_s,
            data_dir=self.data.data_dir,
            test_hook=self.settings.test_hook,
        )
        self.runner: SlotRunner[Job] | None = None
        if self.options.trainer == "process":
            self.trainer = TrainerProcess(
                self.jobs,
                self.teller,
                TrainerOptions(
                    device=self.device,
                    batch=batch,
                    data_dir=self.data.data_dir,
                    allowed_experiment_modules=tuple(self.settings.allowed_experiment_modules),
                    log_level=logging.getLogger().getEffectiveLevel(),
                    setup=self.options.trainer_setup,
                ),
                self._stop,
                starved=self.asker.starved.is_set,
                on_start=self._beat_busy,
            )
        else:
            self.runner = SlotRunner(
                self.jobs,
                self.teller,
                self.data_for,
                self.device,
                batch,
                self._stop,
                starved=self.asker.starved.is_set,
                on_start=self._beat_busy,
            )

    # --- life cycle ------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def trials_started(self) -> int:
        return self.asker.trials_started

    @property
    def trials_done(self) -> int:
        return self.teller.trials_done

    def request_stop(self) -> None:
        """Finish the current epoch, then stop (safe from a signal handler or another thread)."""
        if not self._stop.is_set():
            logger.info("worker %s stopping after the current epoch", self.id or "(starting)")
        self._stop.set()

    def register(self) -> str:
        """Record this worker in ``mtl_workers`` and start its heartbeat; returns its id."""
        from mtl_core.experiments import list_experiments, load_plugins

        load_plugins(self.settings.allowed_experiment_modules)
        self.unavailable.update(unservable(list_experiments(), self.data.data_dir))
        for name, why in self.unavailable.items():
            logger.warning("experiment %r is not served by this worker: %s", name, why)
        servable = [name for name in list_experiments() if name not in self.unavailable]

        def register() -> str:
            with self.database.session() as session:
                repository = WorkerRepository(session)
                return repository.register(
                    hostname=socket.gethostname(),
                    pid=os.getpid(),
                    device=self.device,
                    worker_id=self.options.worker_id,
                    # After load_plugins: the API matches studies against what it can run.
                    experiments=servable,
                    batch_size=self.options.batch,
                    unavailable=dict(self.unavailable),
                ).id

        self.id = self.outage.call("registering the worker", register)
        self._heartbeat = Heartbeat(self.database, self.id, self.heartbeat_s)
        self._heartbeat.start()
        logger.info(
            "worker %s on %s (%s, batch %s)",
            self.id,
            self.device,
            self.database.display_url,
            self.options.batch,
        )
        return self.id

    def _stop_serving(self, experiment: str, reason: str) -> None:
        """A trial of ``experiment`` failed for this worker's own setup (its data): say so in
        the worker row and take no more of its studies (on the teller's thread)."""
        if experiment in self.unavailable:
            return
        self.unavailable[experiment] = reason
        logger.warning(
            "experiment %r is not served by this worker any more: %s", experiment, reason
        )

        def mark() -> None:
            with self.database.session() as session:
                WorkerRepository(session).mark_unavailable(self.id, experiment, reason)

        self.outage.call(f"marking {experiment!r} unavailable", mark)

    def run(self) -> int:
        """Work until stopped, ``max_trials`` or ``idle_exit_s``; returns trials finished.

        Trains on the calling thread; the asker and the teller run on their own threads and
        have ended (everything told) when this returns.
        """
        if self._heartbeat is None:
            self.register()
        if self.trainer is not None:
            self.trainer.start()  # it imports and loads while the asker joins its studies
        self.teller.start(f"teller-{self.id}")
        self.asker.start(f"asker-{self.id}")
        try:
            if self.trainer is not None:
                self.trainer.run()
            else:
                assert self.runner is not None
                self.runner.run()
        finally:
            self._stop.set()  # the asker stops asking (it may still be looking for work)
            try:
                self.asker.join()
                self._drop_queued()
            finally:
                self.teller.close()
                self._shutdown()
        if self.asker.error is not None:
            raise self.asker.error
        return self.trials_done

    def drain(self) -> None:
        """Wait until every job handed to the teller is recorded."""
        self.teller.drain()

    def _drop_queued(self) -> None:
        """Tell every job still in the queue FAIL (worker stopped); frees their slots."""
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self.asker.tell_stopped(job)

    def _shutdown(self) -> None:
        heartbeat = self._heartbeat
        if heartbeat is not None:
            heartbeat.stop()
            self._heartbeat = None
        try:
            with self.database.session() as session:
                WorkerRepository(session).heartbeat(
                    self.id, WorkerStatus.STOPPED, trials_done=self.trials_done
                )
        except Exception as exc:
            logger.warning("could not mark worker %s stopped: %s", self.id, exc)
        logger.info("worker %s stopped after %d trial(s)", self.id, self.trials_done)

    def _send_verdict(self, key: int, decision: Decision) -> None:
        if self.trainer is not None:
            self.trainer.post_verdict(key, decision)

    def _beat_busy(self, job: Job) -> None:
        if self._heartbeat is not None:
            self._heartbeat.set_state(
                WorkerStatus.BUSY,
                job.study.id,
                job.trial.number if job.trial is not None else None,
                trials_done=self.trials_done,
            )

    # --- what the stages share -------------------------------------------------------------

    def data_for(self, job: Job) -> DataSplits:
        """The job's prepared data on the device (the training thread's cache)."""
        return self.data.get(job.study.experiment, job.config.max_train_samples, self.device)

    def maintain(self, force: bool = False) -> None:
        """One maintenance pass of the asker (see `Asker.maintain`)."""
        self.asker.maintain(force)

    def next_jobs(self, n: int = 1) -> list[Job]:
        """Ask up to ``n`` jobs now, as the asker does (see `Asker.next_jobs`)."""
        return self.asker.next_jobs(n)

    def context(self, info: StudyInfo) -> StudyContext | None:
        """The asker's loaded study of ``info`` (see `Asker.context`)."""
        return self.asker.context(info)


__all__ = ["Worker", "WorkerOptions"]
