"""Fleet: N workers, each its own process, on one PostgreSQL database and one study.

Each worker is benchmarks/_fleet_worker.py: the real `mtlsearch.worker.Worker` (asker,
training thread, teller, heartbeat; the pool of `Settings`) with worker_overhead.py's
`NoTrainingRun` in place of `BatchedRun`, which sleeps ``--train-ms`` per epoch instead of
training (a GPU's work releases the GIL as the sleep does). The study (`synthetic`
experiment, median pruner, ``--sampler``, no confirmation runs) first holds ``--prefill``
finished trials, then the fleet runs ``--trials`` more. The prefilled database is built once
and copied for each N (``CREATE DATABASE ... TEMPLATE``), so every N starts from the same study.
The workers register, wait, and are started together; the run ends when the last one's run
ends (each stops once no trial is left to ask).

Per N (W: wall seconds from the start to the last worker's end; S: seconds all workers slept
in "training"; T: trials the workers finished):

  overhead per trial = (W x N - S) / T   (worker time not spent training, per trial)
  trials/hour        = T / W x 3600
  worker CPU         = CPU seconds of the worker processes (all threads) over their runs
  machine CPU busy   = (worker CPU + PostgreSQL CPU) / (W x this machine's cores)
  PostgreSQL CPU     = utime + stime (/proc/<pid>/stat) of every backend connected to the
                       benchmark database (pg_stat_activity, every --interval-s), summed
                       from the start; a lower bound (a backend's last interval before it
                       exits is missed; the server's shared processes are not counted)
  peak connections   = the most pg_stat_activity rows of the database in one sample
  lock waits         = backends with wait_event_type 'Lock', summed over the samples (the
                       most at once in parentheses; the reading names their wait_event);
                       ungranted = backends holding a pg_locks entry not granted, summed
                       over the samples; deadlocks and commits from pg_stat_database,
                       after minus before

The table goes to docs/benchmarks.md under "## Fleet: N workers on one PostgreSQL". Usage
(repository root; the defaults, 30-60 minutes on 2 cores, of which prefilling 10,000 trials
takes about 8):

    .venv/bin/python benchmarks/fleet.py

A quick run, printed only:

    .venv/bin/python benchmarks/fleet.py --workers 1 2 4 --prefill 500 --trials 200 --no-write
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import psycopg  # noqa: E402
from _fleet_report import FleetRun, ms, reading, table  # noqa: E402
from _fleet_worker import READY  # noqa: E402
from _pg_activity import ActivitySampler, DatabaseCounters, max_connections  # noqa: E402
from _report import write_section  # noqa: E402
from sqlalchemy import make_url  # noqa: E402

from mtlsearch.search.spec import StudySpec  # noqa: E402
from service.services.studies import create_study  # noqa: E402
from storage import Database  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.testing import POSTGRES_ADMIN_URL, temporary_postgres_database  # noqa: E402
from tests.utils.trials import add_finished_trials  # noqa: E402

logger = logging.getLogger("fleet")

FLEET_WORKER = REPO_ROOT / "benchmarks" / "_fleet_worker.py"
SECTION = "Fleet: N workers on one PostgreSQL"
#: Longest a fleet may take to register, or to finish its trials, before it is killed.
WORKER_TIMEOUT_S = 3 * 3600
#: Connections a worker holds at once: its asker, teller and heartbeat threads.
CONNECTIONS_PER_WORKER = 3
#: The Optuna and row states of a trial that finished (its budget slot spent).
FINISHED = {"COMPLETE", "PRUNED"}


def study_spec(prefill: int, trials: int, epochs: int, sampler: str) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": "fleet",
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


@contextmanager
def prefilled_database(prefill: int, trials: int, *, epochs: int, sampler: str) -> Iterator[str]:
    """A throwaway database holding the study with `prefill` finished trials and `trials` of
    budget left; nothing stays connected to it (it is the template of each N's copy)."""
    with temporary_postgres_database("mtl_fleet_template") as url:
        upgrade(url)
        database = Database(url)
        spec = study_spec(prefill, trials, epochs, sampler)
        study = create_study(database, spec)
        if prefill:
            add_finished_trials(database, study.optuna_study_name, spec, prefill)
        database.dispose()
        yield url


def database_name(url: str) -> str:
    name = make_url(url).database
    if not name:
        raise ValueError(f"the URL names no database: {url}")
    return name


def libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def trial_states(url: str) -> tuple[dict[str, int], dict[str, int]]:
    """Trials by state in Optuna's ``trials`` table and in our ``mtl_trials`` rows."""
    with psycopg.connect(libpq_url(url)) as connection:
        optuna = connection.execute("SELECT state, count(*) FROM trials GROUP BY state")
        optuna_states = {str(state): int(n) for state, n in optuna.fetchall()}
        rows = connection.execute("SELECT state, count(*) FROM mtl_trials GROUP BY state")
        row_states = {str(state).upper(): int(n) for state, n in rows.fetchall()}
    return optuna_states, row_states


def start_workers(
    url: str, n: int, train_ms: float, batch: int, logs: Path
) -> list[subprocess.Popen[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTLSEARCH_")}
    # The children import this checkout, whatever the virtual environment's install points to.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    command = [sys.executable, str(FLEET_WORKER), "--db", url, "--train-ms", str(train_ms)]
    command += ["--batch", str(batch)]
    processes: list[subprocess.Popen[str]] = []
    for i in range(n):
        with (logs / f"worker-{i}.log").open("wb") as log:  # the child keeps its own handle
            processes.append(
                subprocess.Popen(
                    command,
                    cwd=logs,  # no .env of a checkout is read
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                )
            )
    return processes


def _log_tail(logs: Path, i: int) -> str:
    return (logs / f"worker-{i}.log").read_text()[-3000:]


def measure_fleet(
    template_url: str,
    workers: int,
    *,
    prefill: int,
    trials: int,
    train_ms: float,
    batch: int = 1,
    interval_s: float = 0.5,
) -> FleetRun:
    """Run `workers` stand-in workers on a copy of `template_url` (see `prefilled_database`)
    until its `trials` are finished; the copy is dropped after.

    Raises:
        RuntimeError: a worker failed, or the study does not end with exactly
            ``prefill + trials`` finished trials (Optuna's and our rows alike).
    """
    template = database_name(template_url)
    with (
        temporary_postgres_database("mtl_fleet", template=template) as url,
        tempfile.TemporaryDirectory(prefix="fleet-") as tmp,
    ):
        logs, name = Path(tmp), database_name(url)
        processes = start_workers(url, workers, train_ms, batch, logs)
        try:
            for i, process in enumerate(processes):
                if _stream(process.stdout).readline().strip() != READY:
                    raise RuntimeError(f"worker {i} did not start; log:\n{_log_tail(logs, i)}")
            before = DatabaseCounters.read(POSTGRES_ADMIN_URL, name)
            with ActivitySampler(POSTGRES_ADMIN_URL, name, interval_s) as sampler:
                go = time.time()
                for process in processes:
                    _stream(process.stdin).write("go\n")
                    _stream(process.stdin).flush()
                reports = []
                for i, process in enumerate(processes):
                    out, _ = process.communicate(timeout=WORKER_TIMEOUT_S)
                    if process.returncode != 0:
                        raise RuntimeError(
                            f"worker {i} exited {process.returncode}:\n{_log_tail(logs, i)}"
                        )
                    reports.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        time.sleep(1.0)  # a backend's statistics reach pg_stat_database as it exits
        counters = DatabaseCounters.read(POSTGRES_ADMIN_URL, name) - before
        optuna_states, row_states = trial_states(url)
    run = FleetRun(
        workers=workers,
        trials=sum(r["trials"] for r in reports),
        wall_s=max(r["ended"] for r in reports) - go,
        slept_s=sum(r["slept_s"] for r in reports),
        worker_cpu_s=sum(r["cpu_s"] for r in reports),
        pg_cpu_s=sampler.cpu_s,
        peak_connections=sampler.peak_connections,
        lock_wait_samples=sampler.lock_wait_samples,
        peak_lock_waits=sampler.peak_lock_waits,
        ungranted_lock_samples=sampler.ungranted_lock_samples,
        lock_waits_by_event=dict(sampler.lock_waits_by_event),
        samples=sampler.samples,
        counters=counters,
        optuna_states=optuna_states,
        row_states=row_states,
    )
    expected = prefill + trials
    for kind, states in (("Optuna", optuna_states), ("mtl_trials", row_states)):
        if set(states) - FINISHED or sum(states.values()) != expected:
            raise RuntimeError(f"expected {expected} finished trials, {kind} holds {states}")
    if run.trials != trials:
        raise RuntimeError(f"expected the workers to finish {trials} trials, got {run.trials}")
    return run


def _stream(stream: IO[str] | None) -> IO[str]:
    if stream is None:
        raise RuntimeError("a worker's pipe is missing")
    return stream


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1, 4, 16, 32],
        help="Fleet sizes N, one run each, every one from the same prefilled study "
        "(default: 1 4 16 32).",
    )
    parser.add_argument(
        "--prefill",
        type=int,
        default=10_000,
        help="Finished trials in the study before the fleet starts (default 10000).",
    )
    parser.add_argument(
        "--trials", type=int, default=2048, help="Trials the fleet runs, per N (default 2048)."
    )
    parser.add_argument(
        "--train-ms",
        type=float,
        default=50.0,
        help="Milliseconds each worker sleeps per epoch in place of training (default 50).",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=3,
        help="Epochs per trial, each reported to the median pruner (default 3).",
    )
    parser.add_argument("--batch", type=int, default=1, help="Each worker's --batch K (default 1).")
    parser.add_argument(
        "--sampler",
        default="tpe",
        choices=["tpe", "tpe_batch", "random"],
        help="The study's sampler (default tpe, a study's default; random leaves out TPE's "
        "fit, which runs on the workers' CPU).",
    )
    parser.add_argument(
        "--interval-s",
        type=float,
        default=0.5,
        help="Seconds between two samples of pg_stat_activity (default 0.5).",
    )
    parser.add_argument(
        "--no-write",
        action="store_true",
        help="Print the section; do not write docs/benchmarks.md.",
    )
    args = parser.parse_args()
    for flag in ("workers", "trials", "epochs", "batch"):
        values = getattr(args, flag)
        if min(values if isinstance(values, list) else [values]) < 1:
            parser.error(f"--{flag} must be >= 1, got {values}")
    if args.prefill < 0 or args.train_ms < 0 or args.interval_s <= 0:
        parser.error("--prefill and --train-ms must be >= 0, --interval-s > 0")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    logger.setLevel(logging.INFO)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    limit, in_use = max_connections(POSTGRES_ADMIN_URL)
    if CONNECTIONS_PER_WORKER * max(args.workers) + in_use > limit:
        logger.warning(
            "%d workers may open about %d connections; the server allows %d and %d are open",
            max(args.workers),
            CONNECTIONS_PER_WORKER * max(args.workers),
            limit,
            in_use,
        )
    started = time.perf_counter()
    runs: list[FleetRun] = []
    with prefilled_database(
        args.prefill, args.trials, epochs=args.epochs, sampler=args.sampler
    ) as template:
        logger.info("prefilled %d trials in %.0f s", args.prefill, time.perf_counter() - started)
        for n in args.workers:
            run = measure_fleet(
                template,
                n,
                prefill=args.prefill,
                trials=args.trials,
                train_ms=args.train_ms,
                batch=args.batch,
                interval_s=args.interval_s,
            )
            runs.append(run)
            logger.info(
                "N=%d: %.1f s, %s/trial overhead, %.0f trials/hour, %d connections at peak",
                n,
                run.wall_s,
                ms(run.overhead_s),
                run.per_hour,
                run.peak_connections,
            )
    logger.info("done in %.0f s", time.perf_counter() - started)
    lines = [
        f"{args.trials:,} trials of one study on one PostgreSQL database, run by N worker "
        f"processes started together, after {args.prefill:,} finished trials (sampler "
        f"{args.sampler}, median pruner, {args.epochs} epochs per trial, --batch {args.batch}). "
        "Each worker is the real `Worker` with a stand-in for `BatchedRun` that sleeps "
        f"{args.train_ms:g} ms per epoch instead of training (benchmarks/_fleet_worker.py); "
        f"the workers, PostgreSQL (max_connections {limit}) and this script share one machine. "
        "Overhead per trial = "
        "(wall time x N - time slept in training) / trials. Worker CPU: the workers' processes "
        "while they worked. PostgreSQL CPU: utime + stime from /proc/<pid>/stat of the "
        "backends connected to the database (pg_stat_activity), a lower bound. Machine CPU "
        "busy: (worker + PostgreSQL CPU) / (wall time x cores). Peak connections, lock waits "
        f"(backends with wait_event_type 'Lock', summed over samples every {args.interval_s:g} "
        "s; the most at once in parentheses) and ungranted locks (backends with a pg_locks "
        "entry not granted, summed likewise): pg_stat_activity and pg_locks. Deadlocks and "
        "commits: pg_stat_database, after minus before.",
        "",
        *table(runs),
        "",
        " ".join(reading(runs, limit)),
    ]
    print("\n".join(lines))
    if not args.no_write:
        write_section(SECTION, "\n".join(lines))


if __name__ == "__main__":
    main()
