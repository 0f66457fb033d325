"""End to end: a study submitted over REST and trained by one worker process, next to the
trainer alone on the same trials.

For each experiment and database (a SQLite file; a fresh PostgreSQL database, dropped after):

  service: the real API server (`mtlsearch serve` via uvicorn, on a free port) and one
      `mtlsearch worker --batch K` process (run through benchmarks/_timed_worker.py, which
      times Optuna's ask and tell, the sampler and training inside the worker). The wall time
      runs from the submit request to the study's status ``completed`` (the worker has
      registered before the submit, so its start-up is outside; its first data load is in).
  trainer: the same number of trials, K at a time, with `mtl_core.batched.train_batch` in
      this process (same experiment, epochs, training samples and K; weights drawn
      log-uniform as the study's fixed-weight search does).

Reported: trials/hour of both and their ratio (service / trainer); the worker's busy fraction
(its own time inside `BatchedRun` or `train_trial` / wall); p50 and p99 of ``study.ask()`` and
``study.tell()`` as the worker called them; the sampler's share of the wall time (its methods'
time inside the worker; this overlaps training, as ask and tell run on the worker's asker and
teller threads).
The table goes to docs/benchmarks.md under "## End to end (service)". Usage (repository root):

    .venv/bin/python benchmarks/end_to_end.py --experiments adult multi_mnist \\
        --databases sqlite postgres --trials 1000 10000 --batch 16 --epochs 1 \\
        --max-train-samples 512 --data-dir ../shared/data

``--db-latency-ms 50`` puts the worker 50 ms (a round trip) from PostgreSQL.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import torch  # noqa: E402
from _report import write_section  # noqa: E402
from _timed_worker import merged  # noqa: E402
from sqlalchemy import make_url  # noqa: E402

from mtl_core.batched import train_batch  # noqa: E402
from mtl_core.config import TrialConfig  # noqa: E402
from mtl_core.experiments import get_experiment  # noqa: E402
from mtl_core.trainer import prepare_data  # noqa: E402
from mtlsearch.client import Client  # noqa: E402
from storage.testing import temporary_postgres_database  # noqa: E402
from tests.utils.delay_proxy import DelayProxy  # noqa: E402
from tests.utils.server import start_server  # noqa: E402

logger = logging.getLogger("end_to_end")

TIMED_WORKER = REPO_ROOT / "benchmarks" / "_timed_worker.py"
WEIGHT_RANGE = (0.1, 10.0)
DATABASES = {"sqlite": "SQLite file", "postgres": "PostgreSQL (local)"}


@dataclass
class Row:
    experiment: str
    database: str
    #: Round-trip milliseconds the relay added between the worker and the database.
    latency_ms: float
    trials: int
    complete: int
    service_wall_s: float
    #: The trainer's time for ``trainer_trials`` trials (its rate is per trial).
    trainer_wall_s: float
    trainer_trials: int
    busy_s: float
    sampler_s: float
    ask: list[float]
    tell: list[float]
    #: Seconds the training thread did not train: from the submit to its first training
    #: call, between training calls, and from its last one to the study seen completed.
    idle_start: float
    idle_between: float
    idle_end: float

    @property
    def service_per_hour(self) -> float:
        return self.trials / self.service_wall_s * 3600

    @property
    def trainer_per_hour(self) -> float:
        return self.trainer_trials / self.trainer_wall_s * 3600


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


@contextmanager
def sqlite_db() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="end-to-end-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'bench.db'}"


def database(kind: str) -> AbstractContextManager[str]:
    if kind == "sqlite":
        return sqlite_db()
    return temporary_postgres_database("mtl_e2e")


def spec_for(
    experiment: str, trials: int, epochs: int, max_train: int | None, sampler: str = "tpe_batch"
) -> dict[str, Any]:
    space: dict[str, Any] = {"epochs": epochs}
    if max_train is not None:
        space["max_train_samples"] = max_train
    return {
        "name": f"e2e-{experiment}-{trials}",
        "experiment": experiment,
        "n_trials": trials,
        "seed": 0,
        "sampler": sampler,
        "pruner": "none",
        "objective": {"kind": "weighted_mean"},  # no baselines to train first
        "search_space": space,
    }


def worker_env(db_url: str, data_dir: Path, timings: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTLSEARCH_")}
    env.update(
        MTLSEARCH_DB_URL=db_url,
        MTLSEARCH_DATA_DIR=str(data_dir),
        MTLSEARCH_E2E_TIMINGS=str(timings),
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p),
    )
    return env


@contextmanager
def far_url(db_url: str, latency_ms: float) -> Iterator[str]:
    """``db_url`` as a worker reaches it ``latency_ms`` per round trip away: through a relay
    that holds every byte half of it each way (`tests.utils.delay_proxy`); itself when 0."""
    if not latency_ms:
        yield db_url
        return
    url = make_url(db_url)
    with DelayProxy(url.host or "127.0.0.1", url.port or 5432, latency_ms / 2000) as proxy:
        yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


def run_service(
    db_url: str,
    spec: dict[str, Any],
    k: int,
    data_dir: Path,
    tmp: Path,
    device: str,
    latency_ms: float = 0.0,
    trainer: str = "process",
) -> tuple[float, int, dict[str, Any]]:
    """Submit `spec`, let one worker train it; return wall seconds, trials complete, timings.
    The worker reaches the database ``latency_ms`` per round trip away (the API server
    directly)."""
    timings_path = tmp / "timings.json"
    log = tmp / "worker.log"
    with (
        start_server(db_url) as base,
        Client(base) as client,
        log.open("wb") as out,
        far_url(db_url, latency_ms) as worker_url,
    ):
        worker = subprocess.Popen(
            [
                *(sys.executable, str(TIMED_WORKER), "worker", "--db", worker_url),
                *("--batch", str(k), "--idle-exit", "3", "--data-dir", str(data_dir)),
                *("--device", device, "--trainer", trainer),
            ],
            cwd=tmp,
            env=worker_env(worker_url, data_dir, timings_path),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while not client.workers():
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not register; log:\n{log.read_text()}")
                time.sleep(0.1)
            study = client.submit(spec)
            # Polled as a user's client does (once a second); the wall time is the server's
            # own record, from the study's creation to its finish: exact, and a client
            # polling fast would only take CPU from the worker on a small machine.
            done = client.wait(study["id"])
            submitted = _timestamp(done["created_at"])
            completed = _timestamp(done["finished_at"])
            wall = completed - submitted
            if worker.wait(timeout=120) != 0:
                raise RuntimeError(f"worker exited {worker.returncode}; log:\n{log.read_text()}")
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    if done["status"] != "completed":
        raise RuntimeError(f"study ended {done['status']}; log tail:\n{log.read_text()[-3000:]}")
    timings = merged(timings_path)
    timings["idle"] = idle_spans(timings["spans"]["train"], submitted, completed)
    return wall, int(done["trials"]["complete"]), timings


def _timestamp(text: str) -> float:
    """Seconds since the epoch of one of the API's timestamps (UTC, naive or not)."""
    stamp = datetime.fromisoformat(text)
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def idle_spans(
    spans: list[list[float]], submitted: float, completed: float
) -> tuple[float, float, float]:
    """Seconds without training: before the first span, between spans, after the last."""
    if not spans:
        return completed - submitted, 0.0, 0.0
    ordered = sorted(spans)
    between, reach = 0.0, ordered[0][1]
    for start, end in ordered[1:]:
        between += max(0.0, start - reach)
        reach = max(reach, end)
    return ordered[0][0] - submitted, between, completed - reach


def run_trainer(
    experiment: str,
    trials: int,
    k: int,
    epochs: int,
    max_train: int | None,
    data_dir: Path,
    device: str = "cpu",
) -> tuple[float, float]:
    """Seconds to load the data, and to train `trials` fixed-weight trials K at a time with
    `train_batch`."""
    exp = get_experiment(experiment)
    rng = random.Random(0)
    lo, hi = math.log(WEIGHT_RANGE[0]), math.log(WEIGHT_RANGE[1])
    started = time.perf_counter()
    data = prepare_data(exp, data_dir, torch.device(device), max_train)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    for first in range(0, trials, k):
        configs = [
            TrialConfig(
                experiment=experiment,
                weights={
                    t: 1.0 if i == 0 else math.exp(rng.uniform(lo, hi))
                    for i, t in enumerate(exp.task_names)
                },
                seed=n,
                epochs=epochs,
                max_train_samples=max_train,
                device=device,
            )
            for n in range(first, min(first + k, trials))
        ]
        train_batch(configs, data=data)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return load_s, time.perf_counter() - started


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def table(rows: list[Row]) -> str:
    lines = [
        "| experiment | database | trials | service trials/h | trainer trials/h | "
        "service / trainer | worker busy | ask p50 / p99 (ms) | tell p50 / p99 (ms) | "
        "sampler share | not training: start / between / end (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        far = f", {r.latency_ms:g} ms away" if r.latency_ms else ""
        lines.append(
            f"| {r.experiment} | {DATABASES[r.database]}{far} | {r.trials:,} | "
            f"{r.service_per_hour:,.0f} | {r.trainer_per_hour:,.0f} | "
            f"{r.service_per_hour / r.trainer_per_hour:.2f} | "
            f"{r.busy_s / r.service_wall_s:.0%} | "
            f"{ms(percentile(r.ask, 0.5))} / {ms(percentile(r.ask, 0.99))} | "
            f"{ms(percentile(r.tell, 0.5))} / {ms(percentile(r.tell, 0.99))} | "
            f"{r.sampler_s / r.service_wall_s:.0%} | "
            f"{r.idle_start:.1f} / {r.idle_between:.1f} / {r.idle_end:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[0].split()),
        epilog="Writes its table to docs/benchmarks.md unless --no-write.",
    )
    parser.add_argument(
        "--experiments", nargs="+", default=["adult", "multi_mnist"], help="experiment names"
    )
    parser.add_argument(
        "--databases",
        nargs="+",
        choices=list(DATABASES),
        default=list(DATABASES),
        help="sqlite: a file; postgres: a fresh database on 127.0.0.1:5432, dropped after",
    )
    parser.add_argument(
        "--trials", type=int, nargs="+", default=[1000, 10000], help="study sizes, each a run"
    )
    parser.add_argument("--batch", type=int, default=16, help="K trials per pass")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per trial")
    parser.add_argument(
        "--max-train-samples", type=int, default=512, help="training samples per trial; 0: all"
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path("../shared/data"), help="MNIST and Adult folders"
    )
    parser.add_argument(
        "--trainer-trials",
        type=int,
        default=0,
        help="time the trainer alone on the first N trials of each study (its rate is per "
        "trial: for studies whose trials take seconds); 0: all",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--trainer",
        choices=["process", "thread"],
        default="process",
        help="the worker's --trainer (default: the command's own, process)",
    )
    parser.add_argument(
        "--sampler",
        default="tpe_batch",
        help="the study's sampler (default: the study spec's own, tpe_batch)",
    )
    parser.add_argument(
        "--db-latency-ms",
        type=float,
        nargs="+",
        default=[0.0],
        help="round-trip milliseconds between the worker and PostgreSQL, each a run, added by "
        "a relay that holds every byte half of it each way (a database in another zone); "
        "0: direct",
    )
    parser.add_argument("--note", default="", help="a line of context added under the table")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--section",
        default="End to end (service)",
        help="the docs/benchmarks.md section to (re)write, for several configurations side by side",
    )
    args = parser.parse_args(argv)
    if args.batch < 1 or args.epochs < 1 or any(t < 1 for t in args.trials):
        parser.error("--batch, --epochs and --trials must be >= 1")
    if args.trainer_trials < 0:
        parser.error("--trainer-trials must be >= 0 (0: as many as the study)")
    if args.max_train_samples < 0:
        parser.error("--max-train-samples must be >= 0 (0: all)")
    if not all(ms >= 0 for ms in args.db_latency_ms):
        parser.error(f"--db-latency-ms must be >= 0, got {args.db_latency_ms}")
    if any(args.db_latency_ms) and "sqlite" in args.databases:
        parser.error("--db-latency-ms needs --databases postgres (a SQLite file has no network)")
    args.max_train_samples = args.max_train_samples or None
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    data_dir = args.data_dir.resolve()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    rows: list[Row] = []
    loads: dict[str, float] = {}
    for experiment in args.experiments:
        for trials in args.trials:
            for kind, latency_ms in itertools.product(args.databases, args.db_latency_ms):
                # The trainer runs next to each service run: on a shared machine the load
                # changes between runs, and each ratio compares neighbours.
                trainer_trials = min(trials, args.trainer_trials or trials)
                logger.info(
                    "%s, %d trials: trainer alone on %d (K=%d)",
                    experiment,
                    trials,
                    trainer_trials,
                    args.batch,
                )
                load_s, trainer_wall = run_trainer(
                    experiment,
                    trainer_trials,
                    args.batch,
                    args.epochs,
                    args.max_train_samples,
                    data_dir,
                    args.device,
                )
                loads.setdefault(experiment, load_s)
                logger.info("  trainer: %.1f s (data loaded in %.1f s)", trainer_wall, load_s)
                logger.info(
                    "%s, %d trials: service on %s, %g ms away",
                    experiment,
                    trials,
                    DATABASES[kind],
                    latency_ms,
                )
                spec = spec_for(
                    experiment, trials, args.epochs, args.max_train_samples, args.sampler
                )
                with database(kind) as url, tempfile.TemporaryDirectory() as tmp:
                    wall, complete, timings = run_service(
                        url,
                        spec,
                        args.batch,
                        data_dir,
                        Path(tmp),
                        args.device,
                        latency_ms,
                        args.trainer,
                    )
                row = Row(
                    experiment,
                    kind,
                    latency_ms,
                    trials,
                    complete,
                    wall,
                    trainer_wall,
                    trainer_trials,
                    timings["totals"]["train"],
                    timings["totals"]["sampler"],
                    timings["calls"]["ask"],
                    timings["calls"]["tell"],
                    *timings["idle"],
                )
                rows.append(row)
                cpu = timings["cpu"]
                logger.info(
                    "  worker CPU: %.1f s in all; asker %.1f ms, teller %.1f ms per trial",
                    cpu["process"],
                    cpu.get("asker", 0.0) / trials * 1000,
                    cpu.get("teller", 0.0) / trials * 1000,
                )
                logger.info(
                    "  service: %.1f s, %d complete (%.2f of the trainer's rate)",
                    wall,
                    complete,
                    row.service_per_hour / row.trainer_per_hour,
                )
    far = (
        " Rows marked 'N ms away': the worker reaches PostgreSQL N ms per round trip away (a "
        "relay that holds every byte half of it each way; the API server connects directly)."
        if any(args.db_latency_ms)
        else ""
    )
    body = (
        f"One worker (`--batch {args.batch} --trainer {args.trainer}`, device `{args.device}`) "
        "and the API server on one machine; "
        f"{args.epochs} epoch(s), {args.max_train_samples or 'all'} training samples per trial, "
        f"`{args.sampler}` sampler, fixed weights searched, no pruner, `weighted_mean` "
        "objective. Service: submit over REST → study `completed`. Trainer: `train_batch` in "
        "one process, same trials, K and data, run just before each service run"
        + (
            f" (its rate timed on the first {args.trainer_trials} trials)"
            if args.trainer_trials
            else ""
        )
        + ". Worker busy: the worker's own "
        "time inside training (`BatchedRun`, in its training process with `--trainer "
        "process`) / wall. Ask / tell: `study.ask()` / "
        "`study.tell()` timed inside the worker, every call. Sampler share: the sampler's "
        "methods' time inside the worker / wall (ask and tell, and so the sampler, run on the "
        "worker's asker and teller threads, beside training). The trainer's time leaves out its "
        "data load; the service's wall holds the worker's one load of the data set (in this "
        "process: "
        + ", ".join(f"{name} {s:.1f} s" for name, s in loads.items())
        + ")."
        + far
        + "\n\n"
        + table(rows)
    )
    if args.note:
        body += f"\n\n{args.note}"
    print(body)
    if not args.no_write:
        write_section(args.section, body)
    for r in rows:
        if r.complete != r.trials:
            logger.warning(
                "%s on %s: %d of %d trials complete", r.experiment, r.database, r.complete, r.trials
            )


if __name__ == "__main__":
    main()
