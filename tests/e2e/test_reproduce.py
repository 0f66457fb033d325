"""`mtlsearch train --from-trial`: a trial a worker trained in a batch of 4 on `adult`, retrained
alone from its record over REST, gets the recorded validation and test metrics exactly (CPU).

The real server (uvicorn subprocess) and a real `mtlsearch worker --batch 4` process on one
SQLite file; the retraining runs in this process, through typer's CliRunner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from mtl_core import build_loss_from_best
from mtl_core.reproduce import UNKNOWN_K_NOTE
from mtlsearch.cli import app
from mtlsearch.client import Client
from storage import Database
from storage.models import TrialRecord
from tests.e2e.helpers import wait_done, workers
from tests.utils.server import start_server

pytestmark = pytest.mark.slow


def _spec() -> dict[str, Any]:
    return {
        "name": "reproduce",
        "experiment": "adult",
        "n_trials": 6,
        "seed": 3,
        "sampler": "random",
        "pruner": "none",
        "objective": {"kind": "weighted_mean"},
        "search_space": {
            "epochs": 2,
            "max_train_samples": 512,
            "strategies": [{"name": "fixed"}, {"name": "dwa"}, {"name": "uncertainty"}],
        },
    }


def _from_trial(runner: CliRunner, url: str, reference: str, data_dir: Path) -> dict[str, Any]:
    args = ["train", "--from-trial", reference, "--url", url, "--data-dir", str(data_dir)]
    out = runner.invoke(app, [*args, "--json"])
    assert out.exit_code == 0, out.output
    summary: dict[str, Any] = json.loads(out.stdout)
    return summary


def test_a_batched_trial_is_reproduced_exactly_from_its_record(
    sqlite_url: str, tmp_path: Path, data_dir: Path
) -> None:
    runner = CliRunner()
    with start_server(sqlite_url) as url, Client(url) as client:
        study = client.submit(_spec())
        with workers(sqlite_url, tmp_path, 1, "--batch", "4", "--idle-exit", "2") as (worker,):
            done = wait_done(client, study["id"])
            assert worker.wait() == 0, worker.text
        assert done["status"] == "completed" and done["trials"]["complete"] == 6
        trials = client.trials(study["id"])["data"]
        batched = [t for t in trials if (t["num_slots"] or 0) > 1]
        assert batched, [t["num_slots"] for t in trials]
        # Preferably a trial with a seed of its own (a repeat) in a pass whose data order is
        # another trial's: everything that determines its run must come from its record.
        trial = max(batched, key=lambda t: (t["config"]["data_seed"] != t["seed"], t["number"]))
        reference = f"{study['id']}/{trial['number']}"

        summary = _from_trial(runner, url, reference, data_dir)
        assert summary["num_slots"] == trial["num_slots"]
        assert summary["exact_expected"] and summary["identical"], summary
        assert summary["differences"] == {}
        retrained = {m["metric"]: m["retrained"] for m in summary["metrics"]}
        for split in ("val", "test"):
            for task, value in trial[f"{split}_metrics"].items():
                assert retrained[f"{split}/{task}"] == value  # exactly, not approximately
        assert len(retrained) == 4

        args = ["train", "--from-trial", reference, "--url", url, "--data-dir", str(data_dir)]
        table = runner.invoke(app, args)
        assert table.exit_code == 0, table.output
        assert "identical" in table.stdout and f"K={trial['num_slots']}" in table.stdout

        # A trial recorded before the K of its pass was kept: retrained at K = 1, and told.
        database = Database(sqlite_url)
        with database.session() as session:
            session.execute(
                update(TrialRecord)
                .where(TrialRecord.study_id == study["id"], TrialRecord.number == trial["number"])
                .values(num_slots=None)
            )
        database.dispose()
        legacy = _from_trial(runner, url, reference, data_dir)
        assert legacy["num_slots"] == 1 and not legacy["exact_expected"]
        assert legacy["note"] == UNKNOWN_K_NOTE

        # The record's effective weights build a fixed loss with them.
        record = client.trial(study["id"], trial["number"])
        loss = build_loss_from_best(record, effective_weights=True)
        assert loss.task_names == ("income", "never_married")
        applied = record["strategy_weights"]
        assert loss.fixed_weights.tolist() == pytest.approx(
            [record["config"]["weights"][t] * applied[t] for t in loss.task_names]
        )
