"""The mtlsearch worker: trains the trials of running studies from the shared database.

    from mtlsearch.settings import get_settings
    from mtlsearch.worker import Worker, WorkerOptions
    from storage import get_database

    settings = get_settings()
    database = get_database(settings.db_url, settings.database_config())
    Worker(database, WorkerOptions(device="cuda:0", batch="auto"), settings=settings).run()

See `mtlsearch.worker.loop` for the design (the asker -> runner -> teller pipeline, budget,
fairness, heartbeats, stale trials, signals) and ``mtlsearch worker --help`` for the command.
"""

from __future__ import annotations

from mtlsearch.worker.decisions import (
    CANCELLED_REASON,
    STOPPED_REASON,
    Decision,
    Outcome,
    Verdict,
)
from mtlsearch.worker.heartbeat import Heartbeat
from mtlsearch.worker.jobs import Job
from mtlsearch.worker.loop import Worker, WorkerOptions
from mtlsearch.worker.runner import SlotRunner
from mtlsearch.worker.stale import STALE_REASON, fail_lost_trials, repair_optuna

__all__ = [
    "CANCELLED_REASON",
    "STALE_REASON",
    "STOPPED_REASON",
    "Decision",
    "Heartbeat",
    "Job",
    "Outcome",
    "SlotRunner",
    "Verdict",
    "Worker",
    "WorkerOptions",
    "fail_lost_trials",
    "repair_optuna",
]
