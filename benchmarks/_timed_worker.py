"""`mtlsearch worker` with timers: ``python benchmarks/_timed_worker.py worker --db URL ...``.

Wraps `optuna.study.Study.ask` and ``tell``, the samplers' methods and the trainer's entry
points (`mtl_core.batched.BatchedRun`, `mtl_core.trainer.train_trial`) with timers, runs the
CLI, and at exit writes the timings as JSON to ``$MTLSEARCH_E2E_TIMINGS`` (for
benchmarks/end_to_end.py). Nested calls (a sampler calling another) are counted once. With
``--trainer process`` the training process times its own training (the worker's
``trainer_setup``) and writes it to ``$MTLSEARCH_E2E_TIMINGS.trainer`` when it ends;
`merged` puts the two together.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import optuna  # noqa: E402

import mtl_core.trainer  # noqa: E402
from mtl_core.batched import BatchedRun  # noqa: E402

_SAMPLER_METHODS = (
    "infer_relative_search_space",
    "sample_relative",
    "sample_independent",
    "before_trial",
    "after_trial",
)


class Timings:
    """Per-call seconds of ask and tell; total seconds in the sampler and in training."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: dict[str, list[float]] = {"ask": [], "tell": []}
        self.totals: dict[str, float] = {"sampler": 0.0, "train": 0.0}
        #: Wall-clock (time.time) start and end of every training call: where the device
        #: waited (before the first, between two, after the last).
        self.spans: dict[str, list[tuple[float, float]]] = {"train": []}
        self.depth = threading.local()
        #: CPU seconds of each of the worker's threads (time.thread_time over its body).
        self.cpu: dict[str, float] = {}

    def wrap_cpu(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                with self.lock:
                    self.cpu[name] = self.cpu.get(name, 0.0) + time.thread_time() - started

        return timed

    def wrap(self, key: str, fn: Callable[..., Any], *, per_call: bool) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(self.depth, key, 0)
            if depth:
                return fn(*args, **kwargs)
            setattr(self.depth, key, 1)
            started, wall = time.perf_counter(), time.time()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                setattr(self.depth, key, 0)
                with self.lock:
                    if key in self.spans:
                        self.spans[key].append((wall, wall + elapsed))
                    if per_call:
                        self.calls[key].append(elapsed)
                    else:
                        self.totals[key] += elapsed

        return timed

    def dump(self, suffix: str = "") -> None:
        path = os.environ.get("MTLSEARCH_E2E_TIMINGS")
        if path:
            with self.lock:
                Path(path + suffix).write_text(
                    json.dumps(
                        {
                            "calls": self.calls,
                            "totals": self.totals,
                            "spans": self.spans,
                            "cpu": {**self.cpu, "process": time.process_time()},
                        }
                    )
                )


def install_training(timings: Timings) -> None:
    """Timers on the trainer's entry points and on the runner's thread CPU."""
    for method in ("__init__", "refill", "run_epoch", "finish_completed"):
        wrapped = timings.wrap("train", getattr(BatchedRun, method), per_call=False)
        setattr(BatchedRun, method, wrapped)
    from mtlsearch.worker.runner import SlotRunner

    SlotRunner.run = timings.wrap_cpu("training", SlotRunner.run)  # type: ignore[method-assign]
    mtl_core.trainer.train_trial = timings.wrap(
        "train", mtl_core.trainer.train_trial, per_call=False
    )


def install_in_training_process() -> None:
    """The training process's ``trainer_setup``: time its training, write it as it ends (a
    ``multiprocessing`` child runs no atexit hooks)."""
    from mtlsearch.worker.runner import SlotRunner

    timings = Timings()
    install_training(timings)
    run = SlotRunner.run

    def run_then_dump(self: SlotRunner[Any]) -> None:
        try:
            run(self)
        finally:
            timings.dump(suffix=".trainer")

    SlotRunner.run = run_then_dump  # type: ignore[method-assign]


def merged(path: Path) -> dict[str, Any]:
    """The worker's timings at ``path`` with its training process's, if it had one."""
    timings: dict[str, Any] = json.loads(path.read_text())
    trainer = path.with_name(path.name + ".trainer")
    if trainer.exists():
        theirs = json.loads(trainer.read_text())
        timings["totals"]["train"] += theirs["totals"]["train"]
        timings["spans"]["train"] += theirs["spans"]["train"]
        timings["cpu"]["training"] = theirs["cpu"].get("training", 0.0)
        timings["cpu"]["training process"] = theirs["cpu"]["process"]
    return timings


def install(timings: Timings) -> None:
    study_cls = optuna.study.Study
    for name in ("ask", "tell"):
        setattr(study_cls, name, timings.wrap(name, getattr(study_cls, name), per_call=True))
    for name in dir(optuna.samplers):
        cls = getattr(optuna.samplers, name)
        if isinstance(cls, type) and issubclass(cls, optuna.samplers.BaseSampler):
            for method in _SAMPLER_METHODS:
                if method in cls.__dict__:
                    wrapped = timings.wrap("sampler", cls.__dict__[method], per_call=False)
                    setattr(cls, method, wrapped)
    install_training(timings)
    from mtlsearch.worker.asker import Asker
    from mtlsearch.worker.teller import Teller
    from mtlsearch.worker.trainer_process import TrainerProcess

    Asker._run = timings.wrap_cpu("asker", Asker._run)  # type: ignore[method-assign]
    Teller._run = timings.wrap_cpu("teller", Teller._run)  # type: ignore[method-assign]
    start = TrainerProcess.start

    def start_timed(self: TrainerProcess) -> None:
        self.options = dataclasses.replace(self.options, setup=install_in_training_process)
        start(self)

    TrainerProcess.start = start_timed  # type: ignore[method-assign]


if __name__ == "__main__":
    timings = Timings()
    install(timings)
    atexit.register(timings.dump)
    from mtlsearch.cli import app

    app(prog_name="mtlsearch")
