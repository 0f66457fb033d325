"""What a study left behind after faults: lost, duplicated and stuck trials, counted exactly.

Our ``mtl_trials`` rows are the record and Optuna's trials the mirror; `read_ledger` checks
both against each other and against the study's budget. The chaos tests assert an empty
ledger, and ``tests/soak/chaos_soak.py`` prints one per run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from optuna.trial import TrialState

from storage import Database, StudyInfo, StudyRepository, StudyStatus, TrialRepository
from storage import TrialState as RowState
from storage.models import FailureKind
from tests.e2e.helpers import optuna_trials


@dataclass
class Ledger:
    """Problems by kind (each a line naming the trial), and what the faults did."""

    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    #: Trials failed because their worker was lost, and the retries that re-ran them.
    lost_with_worker: int = 0
    retries: int = 0
    #: Confirmation runs (the best retrained at further seeds), if the study had them.
    confirmation_runs: int = 0

    @property
    def exact(self) -> bool:
        return not (self.lost or self.duplicated or self.stuck)

    def summary(self) -> str:
        return (
            f"lost {len(self.lost)}, duplicated {len(self.duplicated)}, stuck {len(self.stuck)} "
            f"(trials lost with a worker {self.lost_with_worker}, retries {self.retries}, "
            f"confirmation runs {self.confirmation_runs})"
        )


def read_ledger(database: Database, study_id: str, n_trials: int) -> Ledger:
    """The ledger of a study that should have ended with exactly ``n_trials`` COMPLETE."""
    ledger = Ledger()
    with database.session() as session:
        info = StudyRepository(session).get(study_id)
        every = TrialRepository(session).rows(study_id)
    trials = optuna_trials(database, study_id)
    rows = [r for r in every if r.kind == "search"]
    runs = [r for r in every if r.kind == "confirmation"]
    ledger.confirmation_runs = len(runs)
    for run in runs:
        if not run.state.is_finished:
            ledger.stuck.append(f"confirmation run {run.id} is {run.state.value}")
    twice = Counter((r.confirms, r.seed) for r in runs)
    ledger.duplicated += [f"confirmation {k} ran {n} times" for k, n in twice.items() if n > 1]

    if info.status is not StudyStatus.COMPLETED:
        ledger.stuck.append(f"study is {info.status.value}, not completed")
    for row in rows:
        if not row.state.is_finished:
            ledger.stuck.append(f"row {row.id} (trial {row.number}) is {row.state.value}")
    for trial in trials:
        if trial.state in (TrialState.RUNNING, TrialState.WAITING):
            ledger.stuck.append(f"Optuna trial {trial.number} is {trial.state.name}")

    retries = Counter(row.retry_of for row in rows if row.retry_of is not None)
    ledger.retries = sum(retries.values())
    ledger.duplicated += [f"trial {n} re-run {k} times" for n, k in retries.items() if k > 1]
    # Lost with a worker (LOST_REASON) or with a worker's training process (handed back).
    lost = [r for r in rows if r.failure_kind is FailureKind.LOST_WORKER]
    originals = [r for r in lost if r.retry_of is None]
    ledger.lost_with_worker = len(lost)
    ledger.lost += [
        f"lost trial {r.number} never re-run" for r in originals if r.number not in retries
    ]

    complete_rows = {r.number: r for r in rows if r.state is RowState.COMPLETE}
    complete_trials = {t.number: t for t in trials if t.state is TrialState.COMPLETE}
    for what, count in (("rows", len(complete_rows)), ("Optuna trials", len(complete_trials))):
        if count > n_trials:
            ledger.duplicated.append(f"{count} COMPLETE {what} for a budget of {n_trials}")
        elif count < n_trials:
            ledger.lost.append(f"{count} COMPLETE {what} for a budget of {n_trials}")
    for number in complete_rows.keys() ^ complete_trials.keys():
        ledger.duplicated.append(f"trial {number}: COMPLETE in one of row and mirror only")
    for number, row in complete_rows.items():
        mirrored = complete_trials.get(number) if number is not None else None
        if mirrored is not None and mirrored.values != row.values:
            ledger.duplicated.append(
                f"trial {number}: row {row.values} != mirror {mirrored.values}"
            )
    if info.trials_reserved != n_trials:
        ledger.lost.append(f"trials_reserved is {info.trials_reserved}, not {n_trials}")
    return ledger


def assert_exact(database: Database, info: StudyInfo, n_trials: int) -> Ledger:
    """Exactly ``n_trials`` COMPLETE in our rows and in Optuna's mirror, alike; nothing queued,
    reserved, RUNNING or WAITING; each trial lost with its worker re-run exactly once (a retry
    lost in its turn is not); the budget exact."""
    ledger = read_ledger(database, info.id, n_trials)
    assert ledger.exact, (ledger.lost, ledger.duplicated, ledger.stuck)
    return ledger


__all__ = ["Ledger", "assert_exact", "read_ledger"]
