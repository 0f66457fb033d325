"""Submit over HTTP, train with real worker processes, fetch the best (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from mtl_core.architectures import MMoEModel
from mtl_core.production import build_loss_from_best, build_model_from_best
from mtlsearch.cli import app
from mtlsearch.client import Client
from mtlsearch.worker import STOPPED_REASON
from storage import Database
from tests.e2e.helpers import WorkerProcess, optuna_trials, wait_done, wait_for, workers
from tests.utils.server import start_server
from tests.utils.specs import quick_spec

pytestmark = pytest.mark.slow


def test_a_submitted_study_completes_and_its_best_builds_a_loss_and_a_model(
    db_url: str, tmp_path: Path
) -> None:
    spec = quick_spec(
        "flow",
        n_trials=3,
        search_space={
            "strategies": [{"name": "fixed"}, {"name": "dwa"}],
            "architectures": [{"name": "mmoe", "params": {"num_experts": {"low": 2, "high": 4}}}],
        },
    )
    with start_server(db_url) as url, Client(url) as client:
        study = client.submit(spec)
        with workers(db_url, tmp_path, 1, "--idle-exit", "2") as (worker,):
            done = wait_done(client, study["id"])
            assert worker.wait() == 0, worker.text
        assert done["status"] == "completed"
        assert done["trials"]["complete"] == 3 and done["trials"]["fail"] == 0
        best = client.best(study["id"])
        page = client.trials(study["id"], offset=0, limit=10)
        (me,) = client.workers()
    loss = build_loss_from_best(best)
    assert loss.task_names == ("regression", "classification")
    assert best["strategy"] in {"fixed", "dwa"} and best["config"]["epochs"] == 2
    model = build_model_from_best(best)  # the network the best trial trained
    assert best["config"]["architecture"] == "mmoe" and isinstance(model, MMoEModel)
    assert len(model.experts) == best["config"]["architecture_params"]["num_experts"]
    assert page["count"] == 3
    assert me["status"] == "stopped" and me["trials_done"] == 3


def test_sigterm_stops_a_worker_cleanly(sqlite_url: str, tmp_path: Path) -> None:
    spec = quick_spec("sigterm", search_space={"epochs": 300})
    database = Database(sqlite_url)
    with start_server(sqlite_url) as url, Client(url) as client:
        study = client.submit(spec)
        worker = WorkerProcess(sqlite_url, tmp_path / "worker.log")
        try:

            def training() -> bool:
                trials = optuna_trials(database, study["id"])
                return any(t.state is TrialState.RUNNING and t.intermediate_values for t in trials)

            wait_for(training, what="a trial in training")
            worker.signal(signal.SIGTERM)
            assert worker.wait() == 0, worker.text
        finally:
            worker.kill()
        (record,) = client.workers()
        status = client.status(study["id"])
    trials = optuna_trials(database, study["id"])
    database.dispose()
    # The next trial (queued while the first trained) is told FAIL untrained.
    assert len([t for t in trials if t.intermediate_values]) == 1 and len(trials) <= 2
    assert all(t.state is TrialState.FAIL for t in trials)
    assert all(t.user_attrs["fail_reason"] == STOPPED_REASON for t in trials)
    assert record["status"] == "stopped"
    assert status["status"] == "running" and status["trials"]["running"] == 0


def test_cli_verbs_against_the_server(sqlite_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(quick_spec("cli", n_trials=1)))
    slow_file = tmp_path / "slow.json"
    slow_file.write_text(json.dumps(quick_spec("cli-slow", search_space={"epochs": 500})))
    with start_server(sqlite_url) as url:
        submitted = runner.invoke(app, ["submit", str(spec_file), "--url", url])
        assert submitted.exit_code == 0, submitted.output
        study_id = submitted.stdout.split()[0]
        assert f"{url}/dashboard" in submitted.stdout

        with workers(sqlite_url, tmp_path, 1, "--idle-exit", "1", "--max-trials", "1") as (w,):
            assert w.wait() == 0, w.text

        table = runner.invoke(app, ["status", "--url", url])
        assert table.exit_code == 0 and study_id in table.stdout and "completed" in table.stdout
        one = runner.invoke(app, ["status", study_id, "--url", url])
        assert one.exit_code == 0 and "1/1" in one.stdout

        best = runner.invoke(app, ["best", study_id, "--url", url])
        assert best.exit_code == 0, best.output
        with Client(url) as client:
            assert json.loads(best.stdout) == client.best(study_id)
        as_yaml = runner.invoke(app, ["best", study_id, "--url", url, "--format", "yaml"])
        assert yaml.safe_load(as_yaml.stdout) == json.loads(best.stdout)

        refused = runner.invoke(app, ["cancel", study_id, "--url", url])
        assert refused.exit_code == 2
        assert "error:" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1

        other = runner.invoke(app, ["submit", str(slow_file), "--url", url])
        other_id = other.stdout.split()[0]
        cancelled = runner.invoke(app, ["cancel", other_id, "--url", url])
        assert cancelled.exit_code == 0 and "cancelled" in cancelled.stdout

        missing = runner.invoke(app, ["best", "000000000000", "--url", url])
        assert missing.exit_code == 2 and "404" in missing.stderr
