"""A PostgreSQL cluster of a test's own, which the test may stop and start (fault tests).

Usage::

    def test_it(private_postgres: PrivatePostgres) -> None:   # carries @pytest.mark.postgres
        upgrade(private_postgres.url)
        private_postgres.stop(mode="immediate")
        ...
        private_postgres.start()

The shared server at 127.0.0.1:5432 must never be stopped: this one is ``initdb`` in a temp
dir, ``postgres`` on a free port, its own socket directory, ``fsync`` off. initdb refuses to
run as root, so as root the cluster runs as the ``postgres`` OS user (``runuser -u postgres
--``) and owns its directory. Every wait is bounded (``pg_ctl -w -t``, subprocess timeouts); the
fixture stops the cluster (immediate, then SIGKILL of its postmaster) and removes its directory
at teardown, whatever the test did.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import pytest

from tests.utils.server import free_port

logger = logging.getLogger(__name__)

StopMode = Literal["smart", "fast", "immediate"]
STOP_MODES: tuple[str, ...] = ("smart", "fast", "immediate")
#: Longest wait for the server to start or stop (pg_ctl's ``-t``).
PG_CTL_TIMEOUT_S = 30
#: Longest wait for ``initdb``.
INITDB_TIMEOUT_S = 120
_PORT_ATTEMPTS = 3
OS_USER = "postgres"


def postgres_bin_dir() -> Path:
    """The directory of ``initdb`` and ``pg_ctl``: ``$MTLSEARCH_PG_BIN``, Debian's newest
    ``/usr/lib/postgresql/*/bin``, or the one on ``PATH``.

    Raises:
        FileNotFoundError: none has ``initdb``.
    """
    configured = os.environ.get("MTLSEARCH_PG_BIN")
    candidates = [Path(configured)] if configured else []
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [p for p in debian.iterdir() if p.name.isdigit()]
        candidates += [p / "bin" for p in sorted(versions, key=lambda p: -int(p.name))]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    raise FileNotFoundError(
        f"no PostgreSQL binaries (initdb, pg_ctl) in {[str(c) for c in candidates]}; "
        "set MTLSEARCH_PG_BIN"
    )


class PrivatePostgres:
    """One PostgreSQL cluster in a temp dir, on a free port, for one test.

    Args:
        database: the database `create` makes and `url` names.
        extra_addresses: addresses to listen on besides 127.0.0.1 (e.g. ``"10.200.1.1"``, which
            must exist on an interface); clients on their subnets are trusted (``samenet``).
        bin_dir: directory of the PostgreSQL binaries (default: `postgres_bin_dir()`).
    """

    def __init__(
        self,
        database: str = "mtl",
        *,
        extra_addresses: Sequence[str] = (),
        bin_dir: Path | None = None,
    ) -> None:
        if not database.isidentifier():
            raise ValueError(f"database must be a plain identifier, got {database=}")
        self.database = database
        self.addresses = ("127.0.0.1", *extra_addresses)
        self.bin_dir = bin_dir or postgres_bin_dir()
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="mtl-pg-"))
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = 0

    def __repr__(self) -> str:
        return f"PrivatePostgres(port={self.port}, root={str(self.root)!r})"

    # --- addresses ---------------------------------------------------------------------------

    def url_at(self, host: str, database: str | None = None) -> str:
        """The SQLAlchemy URL of `database` (default: ours) through `host`."""
        name = database or self.database
        return f"postgresql+psycopg://postgres@{host}:{self.port}/{name}"

    @property
    def url(self) -> str:
        """``postgresql+psycopg://postgres@127.0.0.1:<port>/<database>``."""
        return self.url_at("127.0.0.1")

    # --- lifecycle ---------------------------------------------------------------------------

    def _run(self, *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", OS_USER, "--"] if self.as_root else []
        command = [*prefix, str(self.bin_dir / args[0]), *args[1:]]
        # Output to a file, not a pipe: the postmaster pg_ctl leaves behind must not hold it.
        with tempfile.TemporaryFile(mode="w+") as out:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                text=True,
                cwd=self.root,
                check=False,
            )
            out.seek(0)
            done.stdout = out.read()
        return done

    def _check(self, done: subprocess.CompletedProcess[str], what: str) -> None:
        if done.returncode != 0:
            raise RuntimeError(
                f"{what} failed ({done.returncode}): {done.stdout.strip()}\n"
                f"server log:\n{self.log_tail()}"
            )

    def init(self) -> None:
        """``initdb`` (trust auth, superuser ``postgres``) and our settings, on a free port."""
        if self.as_root:
            shutil.chown(self.root, OS_USER, OS_USER)
        done = self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
            timeout_s=INITDB_TIMEOUT_S,
        )
        self._check(done, "initdb")
        if self.addresses[1:]:
            # Clients on the subnets of the extra addresses (e.g. the other end of a veth pair).
            with (self.data_dir / "pg_hba.conf").open("a") as hba:
                hba.write("host all all samenet trust\n")

    def _configure(self, port: int) -> None:
        # Appended: the last setting of a name wins, so a retry on another port just adds one.
        # fsync off only risks data on an OS crash; synchronous_commit stays on, else an
        # immediate stop (a crash for PostgreSQL) would lose commits already acknowledged.
        settings = {
            "port": str(port),
            "listen_addresses": f"'{','.join(self.addresses)}'",
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "50",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        self.port = port

    def start(self, timeout_s: float = PG_CTL_TIMEOUT_S) -> None:
        """Start the server (on the port it had; a free one the first time) and wait for it.

        Raises:
            RuntimeError: it did not start in `timeout_s`; with the server log's tail.
        """
        for _attempt in range(1 if self.port else _PORT_ATTEMPTS):
            if not self.port:
                self._configure(free_port())
            done = self._pg_ctl("start", "-l", str(self.log_path), timeout_s=timeout_s)
            if done.returncode == 0:
                return
            if "address already in use" not in self.log_tail().lower() or self.is_running():
                break
            logger.info("port %d was taken; retrying on another", self.port)
            self.port = 0
        self._check(done, f"pg_ctl start on port {self.port}")

    def stop(self, mode: StopMode = "fast", timeout_s: float = PG_CTL_TIMEOUT_S) -> None:
        """Stop the server: ``fast`` (roll back sessions, clean shut down) or ``immediate``
        (kill the backends, crash recovery at next start); waits at most `timeout_s`."""
        if mode not in STOP_MODES:
            raise ValueError(f"mode must be one of {STOP_MODES}, got {mode=}")
        self._check(self._pg_ctl("stop", "-m", mode, timeout_s=timeout_s), f"pg_ctl stop {mode}")

    def restart(self, mode: StopMode = "fast", timeout_s: float = PG_CTL_TIMEOUT_S) -> None:
        """`stop` in `mode`, then `start`."""
        self.stop(mode, timeout_s)
        self.start(timeout_s)

    def _pg_ctl(
        self, action: str, *args: str, timeout_s: float
    ) -> subprocess.CompletedProcess[str]:
        seconds = str(max(1, int(timeout_s)))
        return self._run(
            "pg_ctl", action, "-D", str(self.data_dir), "-w", "-t", seconds, *args,
            timeout_s=timeout_s + 10,
        )  # fmt: skip

    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid (first line of ``postmaster.pid``), or None."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
        except (OSError, ValueError):
            return None
        return pid if process_alive(pid) else None

    def is_running(self) -> bool:
        """Whether the postmaster is alive."""
        return self.postmaster_pid() is not None

    def create_database(self, name: str | None = None) -> str:
        """CREATE DATABASE `name` (default: ours); its URL."""
        import psycopg

        name = name or self.database
        libpq = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(libpq, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url_at("127.0.0.1", name)

    def destroy(self) -> None:
        """Stop the server however it can be stopped, and remove its directory. Never raises."""
        pid = self.postmaster_pid()
        if pid is not None:
            try:
                self._pg_ctl("stop", "-m", "immediate", timeout_s=10)
            except (OSError, subprocess.TimeoutExpired):
                logger.warning("pg_ctl stop failed for %r", self, exc_info=True)
            if self.postmaster_pid() == pid:
                _kill_and_wait(pid)
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.strip().splitlines()[-lines:]) or "(empty log)"


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (a dead postmaster that pg_ctl left to
    init may wait a while to be reaped)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _kill_and_wait(pid: int, timeout_s: float = 10.0) -> None:
    # SIGKILL of the postmaster only: its backends notice and exit within seconds.
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return
        time.sleep(0.05)
    logger.warning("postmaster %d still alive %.0f s after SIGKILL", pid, timeout_s)


@contextmanager
def private_postgres_cluster(
    database: str = "mtl", *, extra_addresses: Sequence[str] = ()
) -> Iterator[PrivatePostgres]:
    """A started `PrivatePostgres` with `database` created; destroyed on exit, always."""
    cluster = PrivatePostgres(database, extra_addresses=extra_addresses)
    try:
        cluster.init()
        cluster.start()
        cluster.create_database()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL cluster (started, database ``mtl`` created) for one test.

    For tests that stop and start the server; they carry ``@pytest.mark.postgres``. Fails (never
    skips) without the PostgreSQL binaries.
    """
    try:
        postgres_bin_dir()
    except FileNotFoundError as exc:
        pytest.fail(f'{exc}, or deselect these tests with -m "not postgres"', pytrace=False)
    with private_postgres_cluster() as cluster:
        yield cluster


__all__ = [
    "STOP_MODES",
    "PrivatePostgres",
    "StopMode",
    "postgres_bin_dir",
    "private_postgres",
    "private_postgres_cluster",
    "process_alive",
]
