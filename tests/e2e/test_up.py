"""`mtlsearch up`: server, dashboard and a local worker from one command, stopped by Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mtlsearch.client import Client
from tests.e2e.helpers import child_env, wait_done, wait_for
from tests.utils.server import free_port
from tests.utils.specs import quick_spec

pytestmark = pytest.mark.slow


def test_up_serves_and_trains_then_stops_on_ctrl_c(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'up.db'}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "mtlsearch", "up", "--db", db, "--port", str(port)],
            cwd=tmp_path,
            env=child_env(db),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def healthy() -> bool:
            assert up.poll() is None, log.read_text()
            try:
                return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, what="/healthz")
        with Client(url) as client:
            study = client.submit(quick_spec("up", n_trials=1))
            done = wait_done(client, study["id"])
            assert done["status"] == "completed"
            wait_for(lambda: bool(client.workers()), what="a registered worker")
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0, log.read_text()
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    text = log.read_text()
    assert f"{url}/dashboard" in text and f"{url}/docs" in text
    assert "mtlsearch submit examples/adult-study.yaml" in text
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz", timeout=2)
