"""Soak the chaos and fault scenarios: each run N times, every run counted exactly.

Not part of the default suite (a file pytest does not collect): one run of each scenario is a
test in ``tests/e2e/test_chaos.py`` / ``test_faults.py``; this script repeats them (the kills at
random moments from fresh seeds) and prints, per run, the trials lost, duplicated and stuck
(`tests.e2e.ledger`), then a table. The figures and the command that produced them are in
docs/reliability.md.

    .venv/bin/python tests/soak/chaos_soak.py --runs 20 --fault-runs 5
    .venv/bin/python tests/soak/chaos_soak.py --runs 3 --scenarios sqlite-kills --seed 7

PostgreSQL scenarios use a fresh database on the server of ``tests/conftest.py``
(127.0.0.1:5432), SQLite ones a file in a temp dir. A failing run keeps its worker logs (the
path is printed); the script exits 1 if any run was not exact. Ctrl-C (SIGINT) or SIGTERM stops
it and prints the table of the runs that finished.
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from storage.testing import temporary_postgres_database  # noqa: E402
from tests.e2e import chaos, faults  # noqa: E402
from tests.e2e.ledger import Ledger  # noqa: E402
from tests.utils.private_postgres import PrivatePostgres, private_postgres_cluster  # noqa: E402

logger = logging.getLogger("chaos_soak")


@contextmanager
def _sqlite(tmp: Path) -> Iterator[str]:
    yield f"sqlite:///{tmp / 'soak.db'}"


@contextmanager
def _nothing(tmp: Path) -> Iterator[str]:
    yield ""


@contextmanager
def _private_cluster(tmp: Path) -> Iterator[PrivatePostgres]:
    with private_postgres_cluster() as cluster:
        yield cluster


@dataclass(frozen=True)
class Outcome:
    """What one run left: its ledger, the kills that landed, and whether its processes ended
    cleanly (exit 0, no traceback)."""

    ledger: Ledger
    kills: int
    clean: bool = True


def _chaos(run: chaos.ChaosRun) -> Outcome:
    return Outcome(run.ledger, run.kills)


def _fault(run: faults.FaultRun) -> Outcome:
    clean = set(run.exit_codes) == {0} and "Traceback" not in run.logs
    return Outcome(run.ledger, 0, clean)


@dataclass(frozen=True)
class Scenario:
    """One scenario: what it does, the database each run gets, and one run."""

    description: str
    database: Callable[[Path], AbstractContextManager[Any]]
    run: Callable[[Any, Path, int], Outcome]


SCENARIOS = {
    "postgres-kills": Scenario(
        "PostgreSQL, 40 trials, 4 workers, 2 of them SIGKILLed at random moments and "
        "restarted, up to 5 rounds",
        lambda tmp: temporary_postgres_database(),
        lambda url, tmp, seed: _chaos(
            chaos.kills(url, tmp, n_workers=4, n_victims=2, rounds=5, seed=seed, n_trials=40)
        ),
    ),
    "trainer-kills": Scenario(
        "PostgreSQL, 30 trials, 3 workers; 2 of them, or only their training processes, "
        "SIGKILLed at random moments, up to 6 rounds",
        lambda tmp: temporary_postgres_database(),
        lambda url, tmp, seed: _chaos(
            chaos.kills(
                url, tmp, n_workers=3, n_victims=2, rounds=6, seed=seed, n_trials=30, trainers=True
            )
        ),
    ),
    "sqlite-kills": Scenario(
        "SQLite, 20 trials, 3 workers, 2 of them SIGKILLed at random moments and restarted, "
        "up to 4 rounds",
        _sqlite,
        lambda url, tmp, seed: _chaos(
            chaos.kills(url, tmp, n_workers=3, n_victims=2, rounds=4, seed=seed, n_trials=20)
        ),
    ),
    "ask-kill": Scenario(
        "SQLite, 3 trials, a worker killed between ask() and recording its trial",
        _sqlite,
        lambda url, tmp, seed: _chaos(chaos.ask_kill(url, tmp)),
    ),
    "server-kill": Scenario(
        "PostgreSQL, 8 trials, 2 workers, the API server SIGKILLed mid-study and started again",
        lambda tmp: temporary_postgres_database(),
        lambda url, tmp, seed: _chaos(chaos.server_kill(url, tmp)),
    ),
    "restart-fast": Scenario(
        "PostgreSQL (private cluster) stopped fast for ~4 s mid-study, 12 trials, 2 workers",
        _private_cluster,
        lambda cluster, tmp, seed: _fault(faults.restart(cluster, tmp, "fast")),
    ),
    "restart-immediate": Scenario(
        "PostgreSQL (private cluster) stopped immediate (a crash) for ~4 s mid-study, "
        "12 trials, 2 workers",
        _private_cluster,
        lambda cluster, tmp, seed: _fault(faults.restart(cluster, tmp, "immediate")),
    ),
    "partition-short": Scenario(
        "a worker cut off from the database for 20 s (grace 60 s), 12 trials, a peer's "
        "maintenance during the cut",
        _nothing,
        lambda _, tmp, seed: _fault(faults.partition(tmp, cut_s=20, grace_s=60)),
    ),
    "partition-long": Scenario(
        "a worker cut off from the database for 25 s (grace 6 s), 12 trials, a peer takes "
        "its trials during the cut",
        _nothing,
        lambda _, tmp, seed: _fault(faults.partition(tmp, cut_s=25, grace_s=6)),
    ),
    "far-database": Scenario(
        "PostgreSQL 50 ms away (a relay, 25 ms each way), 6 trials, 2 workers",
        lambda tmp: temporary_postgres_database(),
        lambda url, tmp, seed: _fault(faults.far_database(url, tmp)),
    ),
}


@dataclass
class Tally:
    runs: int = 0
    kills: int = 0
    lost: int = 0
    duplicated: int = 0
    stuck: int = 0
    lost_with_worker: int = 0
    retries: int = 0
    failed_runs: int = 0
    seconds: float = 0.0


def soak(name: str, runs: int, rng: random.Random, tally: Tally) -> None:
    """Run scenario ``name`` ``runs`` times, counting each finished run into ``tally``."""
    scenario = SCENARIOS[name]
    for index in range(runs):
        seed = rng.randrange(2**31)
        tmp = Path(tempfile.mkdtemp(prefix=f"soak-{name}-"))
        started = time.monotonic()
        failure = None
        try:
            with scenario.database(tmp) as database:
                run = scenario.run(database, tmp, seed)
        except Exception as exc:  # a run that could not finish is stuck: counted, kept
            failure = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            run = None
        seconds = time.monotonic() - started
        tally.runs += 1
        tally.seconds += seconds
        if run is None:
            tally.stuck += 1
            tally.failed_runs += 1
            print(f"{name} #{index + 1} seed {seed}: did not finish ({failure}); logs in {tmp}")
            continue
        ledger = run.ledger
        tally.kills += run.kills
        tally.lost += len(ledger.lost)
        tally.duplicated += len(ledger.duplicated)
        tally.stuck += len(ledger.stuck)
        tally.lost_with_worker += ledger.lost_with_worker
        tally.retries += ledger.retries
        line = f"{name} #{index + 1} seed {seed}: {run.kills} kills, {ledger.summary()}"
        if ledger.exact:
            print(f"{line} ({seconds:.0f} s)")
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tally.failed_runs += 1
            print(
                f"{line}: NOT EXACT {ledger.lost + ledger.duplicated + ledger.stuck}; logs in {tmp}"
            )
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Repeat the chaos scenarios with random kill moments and count lost, "
        "duplicated and stuck trials per run; Ctrl-C or SIGTERM prints the table of the runs "
        "so far.",
    )
    parser.add_argument("--runs", type=int, default=20, help="runs per scenario (default 20)")
    parser.add_argument(
        "--fault-runs",
        type=int,
        default=None,
        help="runs of each restart / partition / latency scenario (default: --runs)",
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=sorted(SCENARIOS),
        default=list(SCENARIOS),
        help="which scenarios (default: all)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the runs' seeds")
    parser.add_argument(
        "--study-timeout",
        type=float,
        default=900.0,
        help="seconds a run's study may take to end before the run counts as stuck (default "
        "900; the tests allow 300, but a soak may share its machine with other work)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")
    if args.study_timeout <= 0:
        parser.error(f"--study-timeout must be > 0, got {args.study_timeout}")
    # The scenarios read their module's limit at each wait.
    chaos.STUDY_TIMEOUT_S = faults.STUDY_TIMEOUT_S = args.study_timeout
    logging.basicConfig(level=logging.WARNING)
    rng = random.Random(args.seed)
    kill_scenarios = {"postgres-kills", "sqlite-kills", "ask-kill", "server-kill"}
    fault_runs = args.fault_runs if args.fault_runs is not None else args.runs
    # Ctrl-C or a kill (SIGTERM) stops the soak with its table, even when it was started in
    # the background (where the shell leaves SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    tallies = {name: Tally() for name in args.scenarios}
    try:
        for name, tally in tallies.items():
            soak(name, args.runs if name in kill_scenarios else fault_runs, rng, tally)
    except KeyboardInterrupt:  # Ctrl-C: the table of the runs that finished
        print("\ninterrupted: the table counts the runs that finished")
        tallies = {name: t for name, t in tallies.items() if t.runs}
    print()
    print(
        "| scenario | runs | kills | trials lost with a worker | retries | lost | duplicated "
        "| stuck | minutes |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, t in tallies.items():
        print(
            f"| {SCENARIOS[name].description} | {t.runs} | {t.kills} | {t.lost_with_worker} | "
            f"{t.retries} | {t.lost} | {t.duplicated} | {t.stuck} | {t.seconds / 60:.1f} |"
        )
    return 1 if any(t.failed_runs for t in tallies.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
