"""Start the real API server (uvicorn in a subprocess) for HTTP and end-to-end tests.

Usage::

    with start_server(db_url, token="s3cret") as base_url:
        httpx.get(f"{base_url}/healthz")

The server runs ``python -m uvicorn --factory service.main:app_from_env`` on a free loopback
port, with ``MTLSEARCH_DB_URL`` (and ``MTLSEARCH_API_TOKEN``) in its environment; its lifespan
migrates the database. The context manager waits until ``/healthz`` answers 200, yields the base
URL (``http://127.0.0.1:<port>``) and terminates the process on exit. If the server dies or
never becomes healthy, `RuntimeError` carries the tail of its log.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
_PORT_ATTEMPTS = 3


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_env(db_url: str, token: str | None, env: Mapping[str, str] | None) -> dict[str, str]:
    full = dict(os.environ)
    # The parent's own settings must not leak into the server under test.
    for key in [k for k in full if k.startswith("MTLSEARCH_") and k != "MTLSEARCH_DATA_DIR"]:
        del full[key]
    full["MTLSEARCH_DB_URL"] = db_url
    if token is not None:
        full["MTLSEARCH_API_TOKEN"] = token
    full["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), full.get("PYTHONPATH", "")) if p
    )
    full.update(env or {})
    return full


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:]) or "(empty log)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


def _wait_healthy(process: subprocess.Popen[bytes], base_url: str, log: Path) -> bool:
    """True once /healthz answers 200; False if the port was taken; raises on other failures."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = _log_tail(log)
                if "address already in use" in tail.lower():
                    return False
                raise RuntimeError(
                    f"API server exited with code {process.returncode} before it was healthy; "
                    f"log:\n{tail}"
                )
            try:
                if client.get(f"{base_url}/healthz").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    _stop(process)
    raise RuntimeError(
        f"API server at {base_url} not healthy after {STARTUP_TIMEOUT_S:.0f} s; log:\n"
        f"{_log_tail(log)}"
    )


@contextmanager
def start_server(
    db_url: str, *, token: str | None = None, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Run the API server on `db_url` in a subprocess; yield its base URL.

    Args:
        db_url: the database the server uses (it is migrated at start).
        token: when set, the bearer token that mutating calls need.
        env: extra environment variables for the server (override the defaults).

    Raises:
        RuntimeError: the server exited or did not answer ``/healthz``; with its log's tail.
    """
    with tempfile.TemporaryDirectory(prefix="mtlsearch-server-") as tmp:
        log = Path(tmp) / "server.log"
        server_env = _server_env(db_url, token, env)
        for _attempt in range(_PORT_ATTEMPTS):
            port = free_port()
            base_url = f"http://127.0.0.1:{port}"
            command = [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "service.main:app_from_env",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ]
            with log.open("wb") as out:
                process = subprocess.Popen(
                    command, cwd=tmp, env=server_env, stdout=out, stderr=subprocess.STDOUT
                )
            try:
                if _wait_healthy(process, base_url, log):
                    break
            except BaseException:
                _stop(process)
                raise
            logger.info("port %d was taken; retrying on another", port)
        else:
            raise RuntimeError(
                f"no free port after {_PORT_ATTEMPTS} attempts; log:\n{_log_tail(log)}"
            )
        try:
            yield base_url
        finally:
            _stop(process)
            if process.returncode not in (0, -15):
                logger.warning(
                    "API server exited with %s; log:\n%s", process.returncode, _log_tail(log)
                )


__all__ = ["free_port", "start_server"]
