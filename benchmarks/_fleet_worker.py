"""One stand-in worker of benchmarks/fleet.py, in its own process.

``python benchmarks/_fleet_worker.py --db URL --train-ms 50 --batch 1``

Builds the worker as ``mtlsearch worker`` does (the process's `Database` with the pool of
`Settings`, a `Worker` with the settings' heartbeat), with worker_overhead.py's
`NoTrainingRun` in place of `mtl_core.batched.BatchedRun` (each epoch sleeps ``--train-ms``).
It registers, prints ``ready``, waits for a line on stdin (every worker of the fleet starts
at once), works until no trial is left, and prints one JSON line: trials finished, seconds
slept in "training", CPU seconds of the process while it worked, and the wall clock
(``time.time()``) when it started and ended.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import optuna  # noqa: E402
from worker_overhead import NoTrainingRun, install_stand_in  # noqa: E402

from mtlsearch.settings import get_settings  # noqa: E402
from mtlsearch.worker import Worker, WorkerOptions  # noqa: E402
from storage import get_database  # noqa: E402

READY = "ready"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="The benchmark's database URL.")
    parser.add_argument("--train-ms", type=float, required=True, help="Sleep per epoch.")
    parser.add_argument("--batch", type=int, default=1, help="The worker's --batch K.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = get_settings()
    database = get_database(args.db, settings.database_config())
    worker = Worker(database, WorkerOptions(idle_exit_s=0.0, batch=args.batch), settings)
    install_stand_in(args.train_ms / 1000, 0, None)  # sleeps per epoch, prepares no data
    worker.register()
    print(READY, flush=True)
    sys.stdin.readline()
    started, cpu_before = time.time(), time.process_time()
    done = worker.run()
    ended, cpu_after = time.time(), time.process_time()
    database.dispose()
    report = {
        "trials": done,
        "slept_s": NoTrainingRun.slept,
        "cpu_s": cpu_after - cpu_before,
        "started": started,
        "ended": ended,
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
