"""API latency: p50/p99 of POST /api/v1/studies and GET /api/v1/studies/{id}/best.

Starts the real server (uvicorn subprocess, `tests/utils/server.py`) on a SQLite file and on a
fresh PostgreSQL database, fills one study with N finished trials straight through Optuna
(``create_trial`` + ``add_trials``: no training), then times sequential requests from one
keep-alive HTTP client: POST of new studies (distinct names), GET /best of the large study,
and, for context, GET of the study (trial counts) and of one page of 100 trials. The table
goes to docs/benchmarks.md under "## API latency". Usage (repository root):

    .venv/bin/python benchmarks/api_latency.py --trials 10000 --requests 300
"""

from __future__ import annotations

import argparse
import logging
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from _report import write_section  # noqa: E402

from mtlsearch.search.spec import StudySpec  # noqa: E402
from storage import close_database, get_database  # noqa: E402
from storage.testing import temporary_postgres_database  # noqa: E402
from tests.utils.server import start_server  # noqa: E402
from tests.utils.trials import add_finished_trials  # noqa: E402

logger = logging.getLogger("api_latency")

TARGET_P99_MS = 50.0


def spec(name: str) -> dict[str, object]:
    """A realistic spec: searched weight, two strategies with a parameter, lr range."""
    return {
        "name": name,
        "experiment": "synthetic",
        "search_space": {
            "weights": {"classification": {"lo": 0.1, "hi": 10}},
            "strategies": [
                {"name": "fixed"},
                {"name": "dwa", "params": {"tau": {"low": 0.5, "high": 5, "log": True}}},
            ],
            "lr": {"low": 1e-4, "high": 1e-2, "log": True},
        },
        "n_trials": 20_000,
    }


@contextmanager
def database(backend: str, tmp: Path) -> Iterator[str]:
    """A fresh database URL of `backend`, removed afterwards."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'latency.db'}"
        try:
            yield url
        finally:
            close_database(url)
        return
    with temporary_postgres_database("mtl_bench") as url:
        yield url


def timed(
    n: int, call: Callable[[int], httpx.Response], expected: int, first: int = 0
) -> list[float]:
    """Milliseconds of `n` sequential calls ``call(first)``, ``call(first + 1)``, ... (each
    must answer `expected`)."""
    times = []
    for i in range(first, first + n):
        start = time.perf_counter()
        response = call(i)
        times.append((time.perf_counter() - start) * 1000)
        if response.status_code != expected:
            raise RuntimeError(f"request {i} answered {response.status_code}: {response.text}")
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def run_backend(backend: str, n_trials: int, n_requests: int) -> tuple[list[list[str]], float]:
    """Time the routes on one backend; return the table rows and the seconds the fill took."""
    rows = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        database(backend, Path(tmp)) as url,
        start_server(url) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        created = client.post("/api/v1/studies", json=spec("latency-best"))
        created.raise_for_status()
        study = created.json()
        start = time.perf_counter()
        add_finished_trials(
            get_database(url),
            study["optuna_study_name"],
            StudySpec.model_validate(study["spec"]),
            n_trials,
        )
        fill_s = time.perf_counter() - start
        logger.info("%s: %d trials added in %.1f s", backend, n_trials, fill_s)
        sid = study["id"]
        run = secrets.token_hex(3)
        calls: list[tuple[str, Callable[[int], httpx.Response], int]] = [
            (
                "POST /api/v1/studies",
                lambda i: client.post("/api/v1/studies", json=spec(f"lat-{run}-{i}")),
                201,
            ),
            (
                f"GET /api/v1/studies/{{id}}/best ({n_trials:,} trials)",
                lambda i: client.get(f"/api/v1/studies/{sid}/best"),
                200,
            ),
            (
                f"GET /api/v1/studies/{{id}} ({n_trials:,} trials)",
                lambda i: client.get(f"/api/v1/studies/{sid}"),
                200,
            ),
            (
                "GET /api/v1/studies/{id}/trials?limit=100",
                lambda i: client.get(
                    f"/api/v1/studies/{sid}/trials",
                    params={"offset": (i * 100) % n_trials, "limit": 100},
                ),
                200,
            ),
        ]
        for label, call, expected in calls:
            # Warm-up: the first calls compile SQL statements and fill the pools.
            timed(10, call, expected, first=n_requests)
            times = timed(n_requests, call, expected)
            p99 = percentile(times, 99)
            rows.append(
                [
                    backend,
                    label,
                    str(n_requests),
                    f"{percentile(times, 50):.1f}",
                    f"{p99:.1f}",
                    f"{statistics.fmean(times):.1f}",
                    f"{max(times):.1f}",
                ]
            )
            logger.info("%s %s: p50 %s ms, p99 %s ms", backend, label, rows[-1][3], rows[-1][4])
    return rows, fill_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000, help="Trials in the /best study.")
    parser.add_argument("--requests", type=int, default=300, help="Timed requests per route.")
    parser.add_argument(
        "--backends", default="sqlite,postgres", help="Comma-separated: sqlite, postgres."
    )
    parser.add_argument("--no-write", action="store_true", help="Print only.")
    args = parser.parse_args()
    if args.trials < 1 or args.requests < 1:
        parser.error(f"--trials and --requests must be >= 1, got {args.trials}, {args.requests}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    rows = []
    fills = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if backend not in ("sqlite", "postgres"):
            parser.error(f"unknown backend {backend!r}; valid: sqlite, postgres")
        backend_rows, fill_s = run_backend(backend, args.trials, args.requests)
        rows.extend(backend_rows)
        fills.append(f"{backend} {fill_s:.0f} s")
    header = "| backend | request | n | p50 (ms) | p99 (ms) | mean (ms) | max (ms) |"
    lines = [header, "|---|---|---:|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    body = (
        "The real server (uvicorn, one process) and the client on the same machine; sequential "
        "requests over one keep-alive connection, timed at the client after 10 warm-up calls. "
        "POST creates studies with distinct names (validation, Optuna study, our record). "
        f"The /best study holds {args.trials:,} finished trials added through Optuna "
        f"(`add_trials`: {', '.join(fills)}). "
        f"Target: p99 < {TARGET_P99_MS:.0f} ms.\n\n" + "\n".join(lines)
    )
    print(body)
    if not args.no_write:
        write_section("API latency", body)


if __name__ == "__main__":
    main()
