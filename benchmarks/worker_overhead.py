"""Worker overhead: what one trial costs a worker outside training, on SQLite and PostgreSQL.

Runs the real `mtlsearch.worker.Worker` pipeline (asker: pick + reserve a row, ask, suggest,
repeat check, record the row; teller: per epoch report + study-status read + pruner, the row's
outcome, a few user attributes, tell, completion check) with a `mtl_core.batched.BatchedRun`
stand-in that does not train: each epoch sleeps ``--train-ms`` (which stands for training; the sleep
releases the GIL as GPU work does) and hands the runner made-up `EpochReport` values. Two
figures per trial: the overhead, (wall time - time slept) / trials, also counted from the
worker's first epoch on (after it joined the study: its one read of the history), and the work
left on the training thread outside its epochs (the runner's own share: refills, verdicts,
hand-overs).
The study (`synthetic` experiment, median pruner) runs with the random sampler (the worker's
own cost) and with TPE (the default, whose model fit grows with the study), at ``--batch 1``
and ``--batch 8``. The table goes to docs/benchmarks.md under "## Worker overhead".
Usage (repository root):

    .venv/bin/python benchmarks/worker_overhead.py --trials 200 --train-ms 0 50

With 10,000 finished trials in the study first, at K = 64 (the critical-path target):

    .venv/bin/python benchmarks/worker_overhead.py --prefill 10000 --trials 256 --batches 64 \
        --train-ms 50 --samplers tpe
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Literal

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from _report import write_section  # noqa: E402

import mtl_core.batched  # noqa: E402
import mtlsearch.worker.studies  # noqa: E402
from mtl_core.batched import FinishedTrial, SlotReport  # noqa: E402
from mtl_core.config import TrialConfig  # noqa: E402
from mtl_core.experiments import get_experiment  # noqa: E402
from mtl_core.results import EpochReport, TrialResult  # noqa: E402
from mtl_core.trainer import resolve_config  # noqa: E402
from mtlsearch.search.spec import StudySpec  # noqa: E402
from mtlsearch.worker import Worker, WorkerOptions  # noqa: E402
from service.services.studies import create_study  # noqa: E402
from storage import Database  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.testing import temporary_postgres_database  # noqa: E402
from tests.utils.trials import add_finished_trials  # noqa: E402

logger = logging.getLogger("worker_overhead")


class _Slot:
    def __init__(self, config: TrialConfig, tag: Any) -> None:
        self.config = resolve_config(config, get_experiment(config.experiment))
        self.tag = tag
        self.epoch = 0
        self.history: list[EpochReport] = []


def python_work(iterations: int) -> None:
    """Pure-Python work that holds the interpreter lock throughout, as a GPU trainer's
    kernel launches do (the ``--stand-in work`` epoch)."""
    total = 0
    for i in range(iterations):
        total += i & 7


def calibrate(train_s: float) -> int:
    """Iterations of `python_work` that take ``train_s`` in an idle process (best of 5)."""
    iterations = 200_000
    best = min(_timed(iterations) for _ in range(5))
    return max(1, round(iterations * train_s / best))


def _timed(iterations: int) -> float:
    started = time.perf_counter()
    python_work(iterations)
    return time.perf_counter() - started


class NoTrainingRun:
    """`mtl_core.batched.BatchedRun`'s slot interface, "training" by sleeping per epoch, or
    by a fixed amount of Python work (``work_iterations``: the epoch then holds the
    interpreter lock as a GPU trainer's launches do, and takes longer when other threads of
    its process want the lock).

    Class attributes (set by `measure` or `install_stand_in`): ``train_s`` per epoch, and
    the clocks (perf_counter: system-wide on Linux, so comparable across processes).
    """

    train_s = 0.0
    work_iterations = 0
    #: Where a training process of its own writes the clocks after each epoch (JSON).
    stats_path: str | None = None
    epochs = 0
    rng = random.Random(0)
    slept = 0.0
    #: perf_counter() at the end of the last epoch (None: in an epoch or no run yet).
    epoch_ended: float | None = None
    #: Seconds the training thread spent between two epochs of a run (its own work).
    between = 0.0
    #: perf_counter() when the first epoch began: the worker had joined the study by then.
    first_epoch: float | None = None

    def __init__(
        self,
        configs: list[TrialConfig],
        data_dir: object = None,
        num_slots: int | None = None,
        data: object = None,
        tags: list[Any] | None = None,
    ) -> None:
        self.num_slots = num_slots or len(configs)
        self.slots: list[_Slot | None] = [None] * self.num_slots
        for index, (config, tag) in enumerate(zip(configs, tags or configs, strict=True)):
            self.slots[index] = _Slot(config, tag)
        self._finished: list[FinishedTrial] = []
        NoTrainingRun.epoch_ended = None

    def occupied(self) -> list[int]:
        return [i for i, slot in enumerate(self.slots) if slot is not None]

    def free_slots(self) -> list[int]:
        return [i for i, slot in enumerate(self.slots) if slot is None]

    def refill(self, index: int, config: TrialConfig, tag: Any = None) -> None:
        self.slots[index] = _Slot(config, tag)

    def run_epoch(self) -> list[SlotReport]:
        cls = NoTrainingRun
        if cls.epoch_ended is not None:
            cls.between += time.perf_counter() - cls.epoch_ended
        if cls.first_epoch is None:
            cls.first_epoch = time.perf_counter()
        if cls.work_iterations:
            before = time.perf_counter()
            python_work(cls.work_iterations)
            cls.slept += time.perf_counter() - before
        elif cls.train_s:
            before = time.perf_counter()
            time.sleep(cls.train_s)
            cls.slept += time.perf_counter() - before
        cls.epochs += 1
        reports = []
        for index in self.occupied():
            slot = self.slots[index]
            assert slot is not None
            slot.epoch += 1
            metrics = {"regression": cls.rng.uniform(0.1, 1.0), "classification": cls.rng.random()}
            report = EpochReport(slot.epoch, {t: 1.0 for t in metrics}, metrics, {}, {}, 0.0)
            slot.history.append(report)
            reports.append(SlotReport(index, slot.tag, report))
        cls.epoch_ended = time.perf_counter()
        if cls.stats_path is not None:
            Path(cls.stats_path).write_text(json.dumps(cls.clocks()))
        return reports

    @classmethod
    def reset(cls, train_s: float, work_iterations: int, stats_path: str | None = None) -> None:
        cls.train_s, cls.work_iterations, cls.stats_path = train_s, work_iterations, stats_path
        cls.slept = cls.between = 0.0
        cls.epochs = 0
        cls.first_epoch = cls.epoch_ended = None

    @classmethod
    def clocks(cls) -> dict[str, Any]:
        return {
            "slept": cls.slept,
            "between": cls.between,
            "first_epoch": cls.first_epoch,
            "epochs": cls.epochs,
        }

    def stop(self, index: int, reason: str | None) -> FinishedTrial:
        slot = self.slots[index]
        assert slot is not None
        self.slots[index] = None
        last = slot.history[-1].val_metrics if slot.history else {}
        result = TrialResult(slot.config, len(slot.history), last, last, {}, slot.history, reason)
        return FinishedTrial(index, slot.tag, result)

    def finish_completed(self) -> None:
        for index in self.occupied():
            slot = self.slots[index]
            assert slot is not None
            if slot.epoch >= slot.config.epochs:
                self._finished.append(self.stop(index, None))

    def pop_finished(self) -> list[FinishedTrial]:
        out, self._finished = self._finished, []
        return out


def install_stand_in(train_s: float, work_iterations: int, stats_path: str | None) -> None:
    """Put `NoTrainingRun` in place of `BatchedRun` (in a training process of its own: the
    worker's ``trainer_setup``), with no data to prepare."""
    import mtlsearch.worker.studies

    NoTrainingRun.reset(train_s, work_iterations, stats_path)
    mtl_core.batched.BatchedRun = NoTrainingRun  # type: ignore[misc,assignment]
    mtlsearch.worker.studies.DataCache.get = lambda self, *args: None  # type: ignore[assignment,method-assign]


@contextmanager
def sqlite_db() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="worker-overhead-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'bench.db'}"


def measure(
    url: str,
    trials: int,
    epochs: int,
    sampler: str,
    *,
    train_ms: float,
    batch: int,
    prefill: int = 0,
    trainer: Literal["thread", "process"] = "thread",
    work: bool = False,
) -> dict[str, float]:
    """Per-trial seconds outside training: the overhead (wall time minus time slept, over
    trials) and the training thread's own work between epochs. With ``prefill``, the study
    holds that many finished trials before the worker starts (what TPE fits grows with it).
    ``trainer``: the worker's ``trainer`` option; ``work``: each epoch does ``train_ms`` of
    Python work (calibrated here, idle) instead of sleeping, and ``stretch`` says how much
    longer the epochs took inside the worker."""
    upgrade(url)
    database = Database(url)
    spec = StudySpec.model_validate(
        {
            "name": "overhead",
            "experiment": "synthetic",
            "n_trials": prefill + trials,
            "seed": 0,
            "sampler": sampler,
            "objective": {"kind": "weighted_mean"},  # no baselines to train first
            "confirmation": {"enabled": False},  # the search's trials only
            "search_space": {
                "epochs": epochs,
                "strategies": [
                    {"name": "fixed"},
                    {"name": "dwa", "params": {"tau": {"low": 0.5, "high": 4.0}}},
                ],
            },
        }
    )
    study = create_study(database, spec)
    if prefill:
        add_finished_trials(database, study.optuna_study_name, spec, prefill)
    iterations = calibrate(train_ms / 1000) if work and train_ms else 0
    with tempfile.TemporaryDirectory(prefix="worker-overhead-clocks-") as tmp:
        stats_path = str(Path(tmp) / "clocks.json") if trainer == "process" else None
        setup = partial(install_stand_in, train_ms / 1000, iterations, stats_path)
        options = WorkerOptions(
            idle_exit_s=0.0, heartbeat_s=10.0, batch=batch, trainer=trainer, trainer_setup=setup
        )
        worker = Worker(database, options)
        real, real_get = mtl_core.batched.BatchedRun, mtlsearch.worker.studies.DataCache.get
        if trainer == "thread":
            install_stand_in(train_ms / 1000, iterations, None)
        try:
            worker.register()
            started = time.perf_counter()
            done = worker.run()
            ended = time.perf_counter()
        finally:
            mtl_core.batched.BatchedRun = real  # type: ignore[misc]
            mtlsearch.worker.studies.DataCache.get = real_get  # type: ignore[method-assign]
        clocks = (
            NoTrainingRun.clocks()
            if stats_path is None
            else json.loads(Path(stats_path).read_text())
        )
    database.dispose()
    if done != trials:
        raise RuntimeError(f"expected {trials} trials, the worker finished {done}")
    joined = clocks["first_epoch"] or started
    slept = clocks["slept"]
    nominal = clocks["epochs"] * train_ms / 1000
    return {
        "overhead": (ended - started - slept) / trials,
        "after joining": (ended - joined - slept) / trials,
        "joining": joined - started,
        "training thread": clocks["between"] / trials,
        "epoch stretch": slept / nominal if nominal else 1.0,
    }


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


#: The figures of each column group, and how each is shown.
COLUMNS = {
    "overhead": ms,
    "after joining": ms,
    "joining": lambda seconds: f"{seconds:.1f} s",
    "training thread": ms,
    "epoch stretch": lambda ratio: f"{ratio:.2f}×",
}


def closing(
    results: dict[tuple[str, str, int, str, float], dict[str, float]], train_ms: Sequence[float]
) -> list[str]:
    """What the figures show, with the figures (sentences built from this run's numbers)."""
    lines: list[str] = []
    keys = sorted(
        {(b, s, tr) for b, s, _, tr, _ in results}, key=lambda k: (k[0] != "SQLite file", k)
    )
    for t in train_ms:
        parts = []
        for backend, sampler, trainer in keys:
            cells = [
                results[key]
                for key in results
                if (key[0], key[1], key[3], key[4]) == (backend, sampler, trainer, t)
            ]
            shown = " → ".join(
                f"{ms(c['overhead'])} ({ms(c['after joining'])} after joining, epochs "
                f"{c['epoch stretch']:.2f}×)"
                for c in cells
            )
            parts.append(f"{backend} {sampler} (trainer {trainer}) {shown}")
        batches = " → ".join(str(k) for k in sorted({key[2] for key in results}))
        training = f"with {t:g} ms of training per epoch" if t else "without training"
        lines.append(f"Mean overhead, batch {batches}, {training}: " + "; ".join(parts) + ".")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--train-ms",
        type=float,
        nargs="+",
        default=[0.0],
        help="Milliseconds slept per epoch in place of training; several values: one column "
        "group each (default 0: the storage work alone).",
    )
    parser.add_argument(
        "--batches", type=int, nargs="+", default=[1, 8], help="The worker's --batch K values."
    )
    parser.add_argument(
        "--prefill",
        type=int,
        default=0,
        help="Finished trials in the study before the worker starts (e.g. 10000: the cost of "
        "a trial in a large study).",
    )
    parser.add_argument("--samplers", nargs="+", default=["random", "tpe"])
    parser.add_argument(
        "--trainers",
        nargs="+",
        choices=["thread", "process"],
        default=["thread"],
        help="The worker's trainer option(s): thread (beside the asker and teller) or "
        "process (a training process of its own).",
    )
    parser.add_argument(
        "--stand-in",
        choices=["sleep", "work"],
        default="sleep",
        help="What an epoch of the stand-in does for --train-ms: sleep (releases the "
        "interpreter lock, as waiting on a GPU does) or work (pure-Python work calibrated to "
        "that time alone, holding the lock as a GPU trainer's kernel launches do).",
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only.")
    parser.add_argument(
        "--section", default="Worker overhead", help="The docs/benchmarks.md section to write."
    )
    parser.add_argument("--no-write", action="store_true", help="Print, do not write the docs.")
    args = parser.parse_args()
    if any(t < 0 for t in args.train_ms):
        parser.error(f"--train-ms must be >= 0, got {args.train_ms}")
    logging.basicConfig(level=logging.WARNING)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backends = [("SQLite file", sqlite_db)]
    if not args.no_postgres:
        backends.append(("PostgreSQL (local)", lambda: temporary_postgres_database("mtl_bench")))
    results: dict[tuple[str, str, int, str, float], dict[str, float]] = {}
    rows: list[tuple[str, str, int, str]] = []
    for label, make in backends:
        for sampler in args.samplers:
            for batch in args.batches:
                for trainer in args.trainers:
                    rows.append((label, sampler, batch, trainer))
                    for train_ms in args.train_ms:
                        with make() as url:
                            stats = measure(
                                url,
                                args.trials,
                                args.epochs,
                                sampler,
                                train_ms=train_ms,
                                batch=batch,
                                prefill=args.prefill,
                                trainer=trainer,
                                work=args.stand_in == "work",
                            )
                        results[(label, sampler, batch, trainer, train_ms)] = stats
                        shown = {k: COLUMNS[k](v) for k, v in stats.items()}
                        print(label, sampler, batch, trainer, f"train={train_ms:g} ms", shown)
    groups = [f"{t:g} ms/epoch" if t else "no training" for t in args.train_ms]
    header = "| backend | sampler | batch | trainer | " + " | ".join(
        f"{g}: {column}" for g in groups for column in COLUMNS
    )
    lines = [
        f"Per-trial cost of the worker outside training: {args.trials} trials of one study "
        f"(median pruner, {args.epochs} epochs reported per trial"
        + (f", {args.prefill:,} finished trials in the study before" if args.prefill else "")
        + f"), one worker. Command: `{' '.join(['.venv/bin/python', *sys.argv])}`. A stand-in for "
        "`BatchedRun` "
        + (
            "does N ms of pure-Python work per epoch (calibrated idle; it holds the interpreter "
            "lock as a GPU trainer's kernel launches do) "
            if args.stand_in == "work"
            else "sleeps N ms per epoch "
        )
        + "instead of training (N = 0: the storage work "
        "alone). Trainer: the worker's trainer option (thread: on the thread that runs the "
        "worker, beside the asker and teller; process: a training process of its own). "
        "Overhead: (wall time − time in epochs) / trials, which holds pick + reserve, ask + "
        "suggest, the repeat check and the row, per-epoch report + study-status read + pruning "
        "decision, the row's outcome, user attributes, tell and the completion check, done on "
        "the asker and teller threads. Joining: from the worker's start to its first epoch, "
        "which holds its one read of the study's history (the sampler needs every trial; a "
        "long-running worker pays it once). After joining: the overhead from the first epoch "
        "on, (wall − joining − time in epochs) / trials. Training thread: the runner's own time "
        "between two epochs, per trial. Epoch stretch: time in epochs / (epochs × N ms): how "
        "much longer training took inside the worker than alone. Target: <= 5 ms per trial.",
        "",
        header + " |",
        "|---|---|---|---|" + "---:|" * (len(COLUMNS) * len(groups)),
    ]
    for label, sampler, batch, trainer in rows:
        cells = " | ".join(
            show(results[(label, sampler, batch, trainer, t)][k])
            for t in args.train_ms
            for k, show in COLUMNS.items()
        )
        lines.append(f"| {label} | {sampler} | {batch} | {trainer} | {cells} |")
    lines += ["", *closing(results, args.train_ms), "", CONCLUSION]
    print("\n".join(lines))
    if not args.no_write:
        write_section(args.section, "\n".join(lines))


#: What the table measures and how to read it; the figures themselves are in the lines above,
#: computed from this run (no number is written here by hand).
CONCLUSION = (
    "How to read it: with training to overlap (the columns with N > 0 ms/epoch) the overhead "
    "is what a real worker adds to each trial beyond training; asks and tells run beside "
    "training, so "
    "it shrinks towards the training-thread figure as long as they keep up. Without training "
    "(N = 0) there is nothing to overlap with, and the overhead is the storage and sampler work "
    "itself, which grows with TPE's fit and with PostgreSQL's round trips. On a shared 2-core "
    "machine rows move by 10-20 ms between runs."
)


if __name__ == "__main__":
    main()
