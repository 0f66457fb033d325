"""`mtlsearch serve`: migrates, prints the URLs, serves the API with the token it was given."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from storage.migrate import current
from tests.utils.server import REPO_ROOT, free_port


def test_serve_migrates_prints_urls_and_guards_mutations(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'serve.db'}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTLSEARCH_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    command = [
        sys.executable,
        "-m",
        "mtlsearch",
        "serve",
        "--port",
        str(port),
        "--db",
        db_url,
        "--token",
        "tok",
    ]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError(f"server not healthy:\n{log.read_text()}")
        assert current(db_url).is_current
        spec = {"name": "served", "experiment": "synthetic", "n_trials": 2}
        assert httpx.post(f"{base}/api/v1/studies", json=spec).status_code == 401
        created = httpx.post(
            f"{base}/api/v1/studies", json=spec, headers={"Authorization": "Bearer tok"}
        )
        assert created.status_code == 201
    finally:
        process.terminate()
        process.wait(timeout=10)
    output = log.read_text()
    assert f"{base}/docs" in output
    assert f"{base}/dashboard" in output
