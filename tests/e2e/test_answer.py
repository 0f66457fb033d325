"""The answer a user acts on, with real processes: a study confirmed at further seeds against
uniform weights, a worker whose data is missing beside a good one, a failed study resumed.

Server (uvicorn), worker processes and a SQLite file, as a user runs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mtlsearch.cli import app
from mtlsearch.client import Client
from storage import Database, StudyRepository, StudyStatus
from tests.e2e.helpers import wait_done, workers
from tests.utils.server import start_server
from tests.utils.specs import quick_spec

pytestmark = pytest.mark.slow

CONFIRM = {"enabled": True, "top": 1, "seeds": 3}


Record = dict[str, Any]


def _answer(
    sqlite_url: str, tmp_path: Path, spec: Record, data_dir: Path
) -> tuple[Record, Record, str]:
    """Run ``spec`` with one worker that batches 6; the study, its /best and `best --format
    text`."""
    options = ("--batch", "6", "--idle-exit", "3", "--data-dir", str(data_dir))
    with start_server(sqlite_url) as url, Client(url) as client:
        study = client.submit(spec)
        with workers(sqlite_url, tmp_path, 1, *options) as (worker,):
            done = wait_done(client, study["id"], timeout=300)
            assert worker.wait() == 0, worker.text
        best = client.best(study["id"])
        text = CliRunner().invoke(app, ["best", study["id"], "--url", url, "--format", "text"])
    assert text.exit_code == 0, text.output
    return done, best, text.output


def test_uniform_weights_beaten_beyond_the_noise(
    sqlite_url: str, tmp_path: Path, data_dir: Path
) -> None:
    # adult_mixed: the hours loss (MSE in raw hours) swamps the income loss under uniform
    # weights; down-weighted 1000x, income's AUC is far better at every seed.
    spec = quick_spec(
        "mixed",
        n_trials=2,
        experiment="adult_mixed",
        max_train_samples=2000,
        objective={"kind": "weighted_mean", "coefficients": {"income": 1.0, "hours": 0.001}},
        search_space={"epochs": 3, "weights": {"hours": {"choices": [0.001]}}},
        confirmation=CONFIRM,
    )
    done, best, text = _answer(sqlite_url, tmp_path, spec, data_dir)
    assert done["status"] == "completed"
    assert done["trials"]["complete"] == 2
    assert done["confirmation"] == {"queued": 0, "running": 0, "complete": 6, "fail": 0}
    confirmation = best["confirmation"]
    assert confirmation["runs"] == confirmation["complete"] == 6
    assert best["weights"]["hours"] == pytest.approx(0.001)
    income = best["confirmed"]["val_metrics"]["income"]
    uniform_income = confirmation["uniform"]["val_metrics"]["income"]
    assert income["n"] == uniform_income["n"] == 3 and income["sd"] > 0
    assert best["val_metrics"]["income"] == pytest.approx(income["mean"])
    verdict = confirmation["verdict"]
    assert verdict["judgement"] == "better", verdict
    assert verdict["difference"] > 2 * verdict["standard_error"]
    assert "better than uniform weights" in verdict["text"]
    assert f"verdict: {verdict['text']}" in text and "uniform weights:" in text


def test_every_configuration_alike_is_within_the_seed_noise(
    sqlite_url: str, tmp_path: Path, data_dir: Path
) -> None:
    # Weights fixed at 1 and the fixed strategy: every trial is uniform weights at its seed.
    spec = quick_spec(
        "alike",
        n_trials=3,
        search_space={"weights": {"classification": 1.0}},
        confirmation=CONFIRM,
    )
    done, best, _ = _answer(sqlite_url, tmp_path, spec, data_dir)
    assert done["status"] == "completed"
    verdict = best["confirmation"]["verdict"]
    assert verdict["judgement"] == "within_noise", verdict
    assert verdict["text"].startswith("within the seed noise of uniform weights")
    assert "keep uniform weights or widen the search" in verdict["text"]


def test_a_worker_without_the_data_beside_a_good_one(
    sqlite_url: str, tmp_path: Path, data_dir: Path
) -> None:
    spec = quick_spec("data", n_trials=4, experiment="adult", max_train_samples=500)
    empty, logs = tmp_path / "no-data", tmp_path / "bad"
    empty.mkdir()
    logs.mkdir()
    bad_options = ("--data-dir", str(empty), "--idle-exit", "8")
    good_options = ("--data-dir", str(data_dir), "--idle-exit", "3")
    with (
        start_server(sqlite_url) as url,
        Client(url) as client,
        workers(sqlite_url, logs, 1, *bad_options) as (bad,),
    ):
        study = client.submit(spec)
        with workers(sqlite_url, tmp_path, 1, *good_options) as (good,):
            done = wait_done(client, study["id"], timeout=300)
            assert good.wait() == 0, good.text
        listed = {w["id"]: w for w in client.workers()}
        assert bad.wait() == 0, bad.text
    assert done["status"] == "completed" and done["trials"]["complete"] == 4
    assert done["trials"]["fail"] == 0  # the bad worker never took a trial
    (bad_row,) = [w for w in listed.values() if w["unavailable"]]
    assert "adult" not in bad_row["experiments"] and "synthetic" in bad_row["experiments"]
    assert "missing data file" in bad_row["unavailable"]["adult"]
    assert bad.text.count("not served by this worker") == 3  # adult, adult_mixed, multi_mnist


def test_a_failed_study_resumes_to_completion(sqlite_url: str, tmp_path: Path) -> None:
    database = Database(sqlite_url)
    with start_server(sqlite_url) as url, Client(url, token=None) as client:
        study = client.submit(quick_spec("resume", n_trials=4))
        with workers(sqlite_url, tmp_path, 1, "--max-trials", "2") as (worker,):
            assert worker.wait() == 0, worker.text
        with database.session() as session:  # as a failure streak marks it
            StudyRepository(session).set_status(study["id"], StudyStatus.FAILED, "3 failures")
        failed = client.status(study["id"])
        assert failed["status"] == "failed" and failed["trials"]["complete"] == 2
        resumed = client.resume(study["id"])
        assert resumed["status"] == "running" and resumed["message"] is None
        again = tmp_path / "again"
        again.mkdir()
        with workers(sqlite_url, again, 1, "--idle-exit", "3") as (worker,):
            done = wait_done(client, study["id"])
            assert worker.wait() == 0, worker.text
    database.dispose()
    assert done["status"] == "completed" and done["trials"]["complete"] == 4
