"""GET /metrics through the real server: series computed from the database at scrape time."""

from __future__ import annotations

import re

from optuna.trial import TrialState

from mtlsearch.search.spec import StudySpec
from storage import TrialRepository, WorkerRepository, get_database
from tests.service.conftest import Served
from tests.utils.trials import add_finished_trials


def _value(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert match, f"{series} not in /metrics:\n{text}"
    return float(match.group(1))


def test_metrics_expose_trials_durations_workers_and_queue(served: Served) -> None:
    before = served.client.get("/metrics").text
    queue_before = _value(before, "mtlsearch_queue_depth")

    spec = {"name": "metrics-study", "experiment": "synthetic", "n_trials": 10}
    study = served.client.post("/api/v1/studies", json=spec).json()
    with get_database(served.db_url).session() as session:  # a live worker, before any retry
        worker = WorkerRepository(session).register(hostname="h", pid=1, device="cpu").id
        for _ in range(3):
            assert TrialRepository(session).reserve(study["id"], worker) is not None
    add_finished_trials(
        get_database(served.db_url),
        study["optuna_study_name"],
        StudySpec.model_validate(study["spec"]),
        4,
        states=(TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING),
    )

    response = served.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    labels = f'study="metrics-study",study_id="{study["id"]}"'
    assert _value(text, f'mtlsearch_trials{{state="complete",{labels}}}') == 2
    # The failed trial and the lost one whose retry waits.
    assert _value(text, f'mtlsearch_trials{{state="fail",{labels}}}') == 2
    assert _value(text, f'mtlsearch_trials{{state="waiting",{labels}}}') == 1
    # 10 trials budgeted: 2 slots kept by complete trials (failed ones give theirs back), 3
    # reserved here, 1 held by the queued retry, which is still to run: 4 + 1 to run.
    assert _value(text, "mtlsearch_queue_depth") == queue_before + 4 + 1
    assert _value(text, "mtlsearch_live_workers") >= 1
    assert _value(text, 'mtlsearch_trial_duration_seconds_count{state="complete"}') >= 2
    assert 'mtlsearch_trial_duration_seconds_bucket{le="+Inf",state="fail"}' in text
    assert 'mtlsearch_studies{status="running"}' in text
