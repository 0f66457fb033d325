"""`mtlsearch up` (what `make run` runs): API server, dashboard and local workers, one command."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType
from typing import Annotated

import httpx
import typer
from rich.markup import escape

from mtlsearch.cli._app import app, console, fail
from mtlsearch.settings import DEFAULT_DB_URL
from storage import migrate
from storage.database import display_url, parse_db_url
from storage.errors import StorageError

logger = logging.getLogger(__name__)

#: Seconds to wait for /healthz after starting the server.
STARTUP_TIMEOUT_S = 60.0
#: Seconds children get to stop after SIGTERM before they are killed.
STOP_TIMEOUT_S = 30.0


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mtlsearch", *args]


def _wait_healthy(server: subprocess.Popen[bytes], base: str, stop: threading.Event) -> bool:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline and not stop.is_set():
            if server.poll() is not None:
                return False
            try:
                if client.get(f"{base}/healthz").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            stop.wait(0.2)
    return False


def _stop_all(children: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every child (workers first: they give their trials back), then wait; kill
    whatever is still there after `STOP_TIMEOUT_S`."""
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for child in reversed(children):
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("pid %d did not stop in %.0f s; killing it", child.pid, STOP_TIMEOUT_S)
            child.kill()
            child.wait()


@app.command("up")
def up(
    db: Annotated[str, typer.Option("--db", help="Database URL (a SQLite file by default).")] = (
        DEFAULT_DB_URL
    ),
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="API port.")] = 8000,
    host: Annotated[str, typer.Option("--host", help="Address the API binds.")] = "127.0.0.1",
    workers: Annotated[int, typer.Option("--workers", min=0, help="Local workers to start.")] = 1,
    device: Annotated[str, typer.Option("--device", help="Device of the workers.")] = "cpu",
    batch: Annotated[str, typer.Option("--batch", help="--batch of the workers: 1, K or auto.")] = (
        "1"
    ),
) -> None:
    """Run the API server, the dashboard and local workers on one database.

    Migrates the database first, stays in the foreground; Ctrl-C or SIGTERM stops them all.
    """
    try:
        shown = display_url(parse_db_url(db))
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            logging.getLogger("alembic").setLevel(logging.WARNING)
        migrate.upgrade(db)
    except (ValueError, StorageError) as exc:
        raise fail(escape(str(exc))) from None

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    env = dict(os.environ)
    env["MTLSEARCH_DB_URL"] = db
    # Children get their own session: a Ctrl-C reaches only this process, which then stops
    # the workers before the server, each once.
    server = subprocess.Popen(
        _command("serve", "--db", db, "--host", host, "--port", str(port)),
        env=env,
        start_new_session=True,
    )
    children = [server]
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base = f"http://{shown_host}:{port}"
    code = 0
    try:
        if not _wait_healthy(server, base, stop):
            if stop.is_set():
                return
            raise fail(f"the API server did not come up on {base} (see its log above)", code=1)
        for _ in range(workers):
            children.append(
                subprocess.Popen(
                    _command("worker", "--db", db, "--device", device, "--batch", batch),
                    env=env,
                    start_new_session=True,
                )
            )
        console.print()
        console.print(f"mtlsearch is up on {escape(shown)}", highlight=False, soft_wrap=True)
        console.print(f"  API docs   {base}/docs", highlight=False, soft_wrap=True)
        console.print(f"  dashboard  {base}/dashboard", highlight=False, soft_wrap=True)
        console.print(f"  workers    {workers} on {device}", highlight=False)
        console.print(
            f"  try        mtlsearch submit examples/adult-study.yaml --url {base}",
            highlight=False,
            soft_wrap=True,
        )
        console.print("Ctrl-C stops everything.", highlight=False)
        reported: set[int] = set()
        while not stop.wait(0.5):
            if server.poll() is not None:
                logger.error("the API server exited with code %s", server.returncode)
                code = 1
                break
            for child in children[1:]:
                if child.poll() is not None and child.pid not in reported:
                    reported.add(child.pid)
                    logger.warning("worker pid %d exited with code %s", child.pid, child.returncode)
    finally:
        _stop_all(children)
    if code:
        raise typer.Exit(code)
