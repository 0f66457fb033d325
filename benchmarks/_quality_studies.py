"""The service's own studies for benchmarks/search_quality.py: submitted over REST to a real
server (a SQLite file) and trained by real `mtlsearch worker --batch K` processes, started the
way benchmarks/end_to_end.py starts them. Each study confirms its best (the spec's
``confirmation``): a study completes only once those runs have trained, and its answer is
``GET /best``, the configuration with the best mean over the confirmation seeds."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import optuna
from _quality_train import Sizes
from end_to_end import worker_env

from mtl_core.experiments import get_experiment
from mtl_core.weighting import list_strategies
from mtlsearch.client import TERMINAL_STATUSES, Client
from storage import Database, TrialRepository
from storage.models import TrialKind
from tests.utils.server import start_server

logger = logging.getLogger("search_quality")

#: How often `Service.run` asks for the study's status; also the most worker CPU time the
#: split between search and confirmation can misattribute (the phase is seen at a poll).
POLL_S = 0.2


@dataclass(frozen=True)
class Confirm:
    """The studies' ``confirmation``: the ``top`` configurations of the search, and uniform
    weights, retrained at ``seeds`` further seeds (the service's defaults: 3, 3, True)."""

    top: int = 3
    seeds: int = 3
    uniform: bool = True

    def __post_init__(self) -> None:
        if self.top < 1 or self.seeds < 2:
            raise ValueError(f"need top >= 1 and seeds >= 2 (a spread), got {self}")

    def spec(self) -> dict[str, Any]:
        return {"enabled": True, "top": self.top, "seeds": self.seeds, "uniform": self.uniform}

    @property
    def label(self) -> str:
        extra = " + uniform weights" if self.uniform else ""
        return f"top {self.top}{extra} x {self.seeds} seeds"


@dataclass(frozen=True)
class StudyKind:
    """What a study searches (``weights``, ``weights+strategy`` or ``multi``: weights with
    one objective per task), its pruner, the worker's K and the study's sampler."""

    space: str
    pruner: str
    batch: int
    sampler: str = "tpe"

    @property
    def label(self) -> str:
        if self.space == "population":
            sampler = SAMPLER_LABELS[self.sampler]
            return f"PBT over weights ({sampler} start), population K={self.batch}"
        return f"{SAMPLER_LABELS[self.sampler]} {self.space}, pruner {self.pruner}, K={self.batch}"


#: The samplers a quality run can give its studies, as its tables name them.
SAMPLER_LABELS = {"tpe": "TPE", "tpe_batch": "batch TPE"}


@dataclass
class StudyRun:
    """One finished study: its search trials as the REST API returns them, its answer
    (``GET /best``) and its cost, the search's and the confirmation's apart."""

    kind: StudyKind
    seed: int
    trials: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    trial_epochs: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    confirm_epochs: int = 0
    confirm_cpu_s: float = 0.0

    @property
    def complete(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t["state"] == "complete"]

    def states(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for trial in self.trials:
            counts[trial["state"]] = counts.get(trial["state"], 0) + 1
        return counts

    def pick(self) -> dict[str, Any] | None:
        """The search's own best: the complete trial with the best (first) objective value on
        validation, the luckiest draw (what `confirmed` corrects)."""
        if self.kind.space == "multi":
            return None
        complete = self.complete
        return max(complete, key=lambda t: t["values"][0]) if complete else None

    @property
    def confirmation(self) -> dict[str, Any]:
        return self.best.get("confirmation") or {}

    def confirmed(self) -> dict[str, Any] | None:
        """Single objective: the confirmed best (means over the confirmation seeds); None when
        no confirmed configuration completed (``/best`` is then the search's trial)."""
        return self.best if "confirmed" in self.best else None

    def verdict(self) -> str:
        """The confirmed best against uniform weights: better, within_noise, worse, unknown."""
        return str((self.confirmation.get("verdict") or {}).get("judgement", "unknown"))


def strategy_space() -> list[dict[str, Any]]:
    # Each strategy's hyper-parameters over the ranges its config declares (from its paper).
    return [{"name": name, "default_ranges": True} for name in list_strategies()]


def study_spec(
    experiment: str,
    kind: StudyKind,
    seed: int,
    n_trials: int,
    sizes: Sizes,
    baselines: dict[str, float],
    confirm: Confirm,
) -> dict[str, Any]:
    """The spec of one study: the grid's weight range, the benchmark's sizes, its best
    confirmed as ``confirm`` says."""
    tasks = get_experiment(experiment).task_names
    lo, hi = sizes.weight_range
    space: dict[str, Any] = {
        "reference_task": tasks[0],
        "weights": {tasks[1]: {"lo": lo, "hi": hi}},
        "epochs": sizes.epochs,
    }
    if sizes.max_train_samples is not None:
        space["max_train_samples"] = sizes.max_train_samples
    if kind.space == "weights+strategy":
        space["strategies"] = strategy_space()
    objective: dict[str, Any] = (
        {"kind": "multi"} if kind.space == "multi" else {"kind": "delta_m", "baselines": baselines}
    )
    name = f"q-{experiment}-{kind.space}-{kind.pruner}-k{kind.batch}-s{seed}".replace("+", "_")
    if kind.sampler != "tpe":
        name = f"{name}-{kind.sampler}"
    if kind.space == "population":
        # The whole budget is one population (the worker's --batch is n_trials); exploit and
        # explore after every epoch; its answer is its best member, not confirmed.
        return {
            "name": name[:64],
            "experiment": experiment,
            "n_trials": n_trials,
            "seed": seed,
            "sampler": kind.sampler,
            "objective": objective,
            "search_space": space,
            "population": {"interval_epochs": 1},
        }
    return {
        "name": name[:64],
        "experiment": experiment,
        "n_trials": n_trials,
        "seed": seed,
        "sampler": kind.sampler,
        "pruner": kind.pruner,
        "objective": objective,
        "search_space": space,
        "confirmation": confirm.spec(),
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process and its live descendants, all their
    threads (Linux /proc): the worker and its training process (``--trainer process``)."""
    parents: dict[int, int] = {}
    ticks_of: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it exited meanwhile
            continue
        process = int(entry.name)
        parents[process] = int(fields[1])  # ppid
        ticks_of[process] = int(fields[11]) + int(fields[12])  # utime, stime
    tree = {pid}
    grown = True
    while grown:
        children = {p for p, parent in parents.items() if parent in tree} - tree
        tree |= children
        grown = bool(children)
    return sum(ticks_of.get(p, 0) for p in tree) / os.sysconf("SC_CLK_TCK")


class Service:
    """A server on a fresh SQLite file and one worker process at a time, of the K asked."""

    def __init__(self, data_dir: Path, device: str) -> None:
        self.data_dir = data_dir
        self.device = device
        self._stack = ExitStack()
        self._workers: dict[int, subprocess.Popen[bytes]] = {}
        tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="quality-")))
        self.tmp = tmp
        self.db_url = f"sqlite:///{tmp / 'quality.db'}"
        self.database = Database(self.db_url)
        self._stack.callback(self.database.dispose)
        self.client: Client | None = None

    def __enter__(self) -> Service:
        base = self._stack.enter_context(start_server(self.db_url))
        self.client = self._stack.enter_context(Client(base))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        for k in list(self._workers):
            self._stop(k)
        self._stack.close()

    def _stop(self, k: int) -> None:
        worker = self._workers.pop(k)
        worker.terminate()
        try:
            worker.wait(timeout=120)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()

    def _worker(self, k: int) -> subprocess.Popen[bytes]:
        """The worker of ``k`` slots, the only one running: any study would go to any live
        worker, so the others stop first (run the studies grouped by K)."""
        if k in self._workers and self._workers[k].poll() is None:
            return self._workers[k]
        for other in list(self._workers):
            self._stop(other)
        assert self.client is not None
        log = (self.tmp / f"worker-k{k}.log").open("wb")
        self._stack.callback(log.close)
        before = {w["id"] for w in self.client.workers()}
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "mtlsearch", "worker", "--db", self.db_url),
                *("--batch", str(k), "--device", self.device, "--data-dir", str(self.data_dir)),
            ],
            cwd=self.tmp,
            env=worker_env(self.db_url, self.data_dir, self.tmp / f"timings-k{k}.json"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while not {w["id"] for w in self.client.workers()} - before:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker K={k} did not register; see {log.name}")
            time.sleep(0.2)
        self._workers[k] = worker
        return worker

    def run(self, spec: dict[str, Any], kind: StudyKind, seed: int) -> StudyRun:
        """Submit ``spec`` with only the worker of ``kind.batch`` training; wait until the
        study is completed, which is after its confirmation runs.

        The worker runs with ``--batch min(K, n_trials)``: with fewer trials than K it asks
        them all before telling any either way, and the trainer computes its free slots
        (masked, not removed), so K = 32 slots for 12 trials would spend 32/12 of the compute
        on nothing.
        """
        assert self.client is not None
        worker = self._worker(min(kind.batch, int(spec["n_trials"])))
        cpu_before = _cpu_seconds(worker.pid)
        started = time.perf_counter()
        study = self.client.submit(spec)
        done, cpu_at_confirming = self._wait(study["id"], worker.pid)
        out = StudyRun(kind, seed, wall_s=time.perf_counter() - started)
        cpu_total = _cpu_seconds(worker.pid) - cpu_before
        out.cpu_s = cpu_at_confirming - cpu_before
        out.confirm_cpu_s = cpu_total - out.cpu_s
        if done["status"] != "completed":
            raise RuntimeError(f"study {spec['name']} ended {done['status']}: {done}")
        offset = 0
        while True:
            page = self.client.trials(study["id"], offset=offset, limit=100)
            out.trials.extend(page["data"])
            offset += len(page["data"])
            if not page["data"] or offset >= page["count"]:
                break
        out.best = self.client.best(study["id"])
        out.trial_epochs = self._epochs_run(done["optuna_study_name"], int(spec_epochs(spec)))
        out.confirm_epochs = self._confirmation_epochs(study["id"])
        if out.confirm_epochs and out.confirm_cpu_s == 0:
            logger.warning("%s: never seen confirming; its CPU counts as search", spec["name"])
        return out

    def _wait(self, study_id: str, pid: int) -> tuple[dict[str, Any], float]:
        """Poll until the study stops: its last status, and the worker's CPU seconds when the
        study was first seen confirming (at the end if it never was)."""
        assert self.client is not None
        at_confirming: float | None = None
        while True:
            study = self.client.status(study_id)
            if at_confirming is None and study.get("phase") == "confirming":
                at_confirming = _cpu_seconds(pid)
            if study["status"] in TERMINAL_STATUSES:
                return study, _cpu_seconds(pid) if at_confirming is None else at_confirming
            time.sleep(POLL_S)

    def _confirmation_epochs(self, study_id: str) -> int:
        """Epochs trained by the study's confirmation runs (they have no Optuna trial)."""
        with self.database.session() as session:
            rows = TrialRepository(session).confirmation_rows(study_id)
        return sum(r.epochs_run or 0 for r in rows if r.kind == TrialKind.CONFIRMATION)

    def _epochs_run(self, optuna_name: str, epochs: int) -> int:
        """Epochs trained over the study's search trials: all of them for a complete trial,
        the reported ones for a pruned or failed one (Optuna's public API; confirmation runs
        have no Optuna trial)."""
        study = optuna.load_study(study_name=optuna_name, storage=self.db_url)
        total = 0
        for trial in study.get_trials(deepcopy=False):
            if trial.state == optuna.trial.TrialState.COMPLETE:
                total += epochs
            else:
                total += max(trial.intermediate_values, default=0)
        return total


def spec_epochs(spec: dict[str, Any]) -> int:
    return int(spec["search_space"]["epochs"])
