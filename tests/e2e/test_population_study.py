"""A population (PBT) study over REST with a real worker: members copy each other, and their
trajectories and lineage come back through REST, the client and production."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtl_core.production import build_loss_from_best
from mtlsearch.client import Client
from tests.e2e.helpers import wait_done, workers
from tests.utils.server import start_server
from tests.utils.specs import quick_spec

pytestmark = pytest.mark.slow

EPOCHS = 4


@pytest.mark.parametrize("trainer", ["thread", "process"])
def test_a_population_study_trains_members_that_copy_each_other(
    db_url: str, tmp_path: Path, trainer: str
) -> None:
    spec = quick_spec(
        "pbt",
        n_trials=4,
        population={"interval_epochs": 1, "quantile": 0.25},
        search_space={"epochs": EPOCHS, "weights": {"classification": {"lo": 0.1, "hi": 10.0}}},
    )
    with start_server(db_url) as url, Client(url) as client:
        study = client.submit(spec)
        args = ("--batch", "4", "--trainer", trainer, "--idle-exit", "2")
        with workers(db_url, tmp_path, 1, *args) as (worker,):
            done = wait_done(client, study["id"])
            assert worker.wait() == 0, worker.text
        assert done["status"] == "completed" and done["trials"]["complete"] == 4
        trials = client.trials(study["id"])["data"]
        best = client.best(study["id"])
        again = client.trial(study["id"], trials[0]["number"])
    numbers = {t["number"] for t in trials}
    members = [t["population"] for t in trials]
    assert again["population"] == members[0]
    # One member of four is replaced after each of epochs 1, 2 and 3 (none after the last).
    lineage = [step for member in members for step in member["lineage"]]
    assert sorted(step["epoch"] for step in lineage) == [1, 2, 3]
    assert all(step["source"] in numbers for step in lineage)
    for trial, member in zip(trials, members, strict=True):
        assert member["epochs"] == EPOCHS
        trajectory = member["trajectory"]
        assert trajectory[0]["epoch"] == 0
        assert [entry["epoch"] for entry in trajectory[1:]] == [
            s["epoch"] for s in member["lineage"]
        ]
        # The weights it trained with last are its recorded config's.
        assert trajectory[-1]["weights"] == trial["config"]["weights"]
    # The best member's weights, epoch by epoch, in a production loss.
    loss = build_loss_from_best(best)
    schedule = {entry["epoch"]: entry["weights"] for entry in best["population"]["trajectory"]}
    expected = schedule[0]
    for epoch in range(EPOCHS):
        expected = schedule.get(epoch, expected)
        applied = loss.fixed_weights.tolist()
        assert applied == pytest.approx([expected[t] for t in loss.task_names], rel=1e-6), epoch
        loss.epoch_end()
