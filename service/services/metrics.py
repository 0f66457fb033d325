"""Prometheus metrics, computed from the database at scrape time.

A custom collector runs a handful of aggregate queries per scrape, so the numbers are the
database's (every worker on every machine), not this process's:

* ``mtlsearch_trials{study, study_id, state}``: trials per study and state (``mtl_trials``);
* ``mtlsearch_studies{status}``: studies per status;
* ``mtlsearch_trial_duration_seconds{state}``: histogram of finished trials' durations;
* ``mtlsearch_live_workers`` and ``mtlsearch_workers{status}`` (idle and busy count live
  workers only, heartbeat within ``stale_after_s``; a killed worker's row still says busy);
* ``mtlsearch_queue_depth``: trials still to run in running studies (n_trials minus the slots
  taken, plus the queued retries of lost trials, which hold a slot but wait for a worker).
"""

from __future__ import annotations

import bisect
import logging
from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from mtlsearch.settings import Settings
from storage import (
    Database,
    StudyRepository,
    StudyStatus,
    TrialRepository,
    WorkerRepository,
    WorkerStatus,
)
from storage.repositories.studies import MAX_PAGE

logger = logging.getLogger(__name__)

#: Upper bounds (seconds) of the trial-duration histogram's buckets.
DURATION_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class DatabaseCollector(Collector):
    """Collects mtlsearch's metrics from the shared database on every scrape.

    Args:
        database: the database to query.
        settings: gives ``stale_after_s`` (when a worker stops counting as live).
    """

    def __init__(self, database: Database, settings: Settings) -> None:
        self._database = database
        self._settings = settings

    def collect(self) -> Iterator[Metric]:
        with self._database.session() as session:
            infos = []
            offset = 0
            repo = StudyRepository(session)
            while True:
                page, total = repo.list(offset=offset, limit=MAX_PAGE)
                infos.extend(page)
                offset += len(page)
                if not page or offset >= total:
                    break
            trial_repo = TrialRepository(session)
            counts = trial_repo.state_counts([info.id for info in infos])
            durations = trial_repo.finished_durations()
            workers = WorkerRepository(session).list(live_within_s=self._settings.stale_after_s)

        trials = GaugeMetricFamily(
            "mtlsearch_trials",
            "Trials per study and Optuna state.",
            labels=["study", "study_id", "state"],
        )
        statuses = Counter(info.status.value for info in infos)
        queue = 0
        for info in infos:
            study_counts = counts[info.id]
            for state, n in sorted(study_counts.items()):
                trials.add_metric([info.name, info.id, state], n)
            if info.status is StudyStatus.RUNNING:
                if info.n_trials is not None:
                    queue += max(0, info.n_trials - info.trials_reserved)
                queue += study_counts.get("waiting", 0)
        yield trials

        studies = GaugeMetricFamily("mtlsearch_studies", "Studies per status.", labels=["status"])
        for status in StudyStatus:
            studies.add_metric([status.value], statuses.get(status.value, 0))
        yield studies

        yield from _duration_histogram(durations)

        live = sum(1 for w in workers if w.live)
        yield GaugeMetricFamily(
            "mtlsearch_live_workers", "Workers that heart-beat recently.", value=live
        )
        by_status = GaugeMetricFamily("mtlsearch_workers", "Workers per status.", labels=["status"])
        # Only live workers are idle or busy: a killed worker's row still says "busy".
        worker_statuses = Counter(
            w.status.value for w in workers if w.live or w.status is WorkerStatus.STOPPED
        )
        for status_name in ("idle", "busy", "stopped"):
            by_status.add_metric([status_name], worker_statuses.get(status_name, 0))
        yield by_status
        yield GaugeMetricFamily(
            "mtlsearch_queue_depth",
            "Trials still to run in running studies (budget not yet reserved + waiting).",
            value=queue,
        )


def _duration_histogram(durations: list[tuple[str, float]]) -> Iterator[Metric]:
    histogram = HistogramMetricFamily(
        "mtlsearch_trial_duration_seconds",
        "Duration of finished trials (start to completion), by final state.",
        labels=["state"],
    )
    for state in ("complete", "pruned", "fail"):
        values = sorted(seconds for s, seconds in durations if s == state)
        buckets: list[tuple[str, float]] = [
            (str(bound), float(bisect.bisect_right(values, bound))) for bound in DURATION_BUCKETS
        ]
        buckets.append(("+Inf", float(len(values))))
        histogram.add_metric([state], buckets, sum_value=float(sum(values)))
    yield histogram


def build_registry(database: Database, settings: Settings) -> CollectorRegistry:
    """A registry of its own (not the process-global one) holding the database collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(database, settings))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus' text format."""
    return generate_latest(registry)


__all__ = ["DURATION_BUCKETS", "DatabaseCollector", "build_registry", "render"]
