"""The worker's decisions, as pure functions over small frozen values (no database, no study).

* `epoch_verdict`: after an epoch, does a trial go on, get pruned, or end because its study is
  no longer running or the worker stops?
* `finished_outcome` / `checked_outcome`: how a finished job ends (COMPLETE, PRUNED or FAIL).
* `next_streak`: a study's failure streak after one more finished trial, and whether the
  study is to be failed.
* `exit_reason` / `next_idle_sleep`: when the worker stops looking for work, and how long it
  sleeps between two looks.

The threads (`mtlsearch.worker.asker`, `mtlsearch.worker.runner`, `mtlsearch.worker.teller`)
gather the facts and do the storage work; what to do with the facts is decided here.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from optuna.trial import TrialState

from mtl_core.errors import ConfigError, DataError, TrainingDiverged
from mtlsearch.search.optuna_factory import should_consider_pruning
from storage import StudyStatus
from storage.models import FailureKind

if TYPE_CHECKING:
    from mtl_core.results import TrialResult

#: ``fail_reason`` of a trial stopped because its study was cancelled.
CANCELLED_REASON = "study cancelled"
#: ``fail_reason`` of a trial stopped because its worker was asked to stop.
STOPPED_REASON = "worker stopped"


class Verdict(enum.Enum):
    """What happens to a trial after an epoch."""

    CONTINUE = "continue"
    PRUNE = "prune"
    CANCEL = "cancel"
    STOP = "stop"


@dataclass(frozen=True)
class Decision:
    """A verdict and, unless CONTINUE, the reason to record."""

    verdict: Verdict
    reason: str = ""


GO_ON = Decision(Verdict.CONTINUE)


@dataclass(frozen=True)
class Outcome:
    """How a job ended.

    Args:
        state: COMPLETE, PRUNED or FAIL.
        result: the training result (absent when training raised or never started).
        reason: why a FAIL or PRUNED happened (``fail_reason`` / ``stop_reason``).
        counts_as_failure: the failure counts towards the study's failure streak: the trial
            itself failed (diverged, bad config, crash) and, in a batch, no other trial of its
            study trained on healthy through that epoch. Not for a trial stopped from outside
            (cancel, worker stop) nor out of memory at K=1.
        failure_round: the round the failure belongs to (one epoch of one batch); failures of
            one round count once. None: the trial is a round of its own.
        failure_kind: why a FAIL happened, for code (stored with the row; the reason is for
            people). A ``worker_setup`` failure is the worker's, not the trial's: the trial is
            handed to another worker.
    """

    state: TrialState
    result: TrialResult | None = None
    reason: str | None = None
    counts_as_failure: bool = False
    failure_round: int | None = None
    failure_kind: FailureKind | None = None


@dataclass(frozen=True)
class EpochFacts:
    """What is known about one trial after one of its epochs."""

    study_status: StudyStatus | str
    stopping: bool
    epoch: int
    epochs: int
    reported: bool
    strategy: str
    pruner: str


def epoch_verdict(facts: EpochFacts, pruner_says_prune: Callable[[], bool]) -> Decision:
    """The verdict on a trial after an epoch.

    ``pruner_says_prune`` (the trial's ``should_prune``) is called only when the pruner is to be
    asked: a reported value, epochs left, and past the strategy's warm-up.
    """
    if facts.study_status is not StudyStatus.RUNNING:
        return Decision(Verdict.CANCEL, ended_reason(facts.study_status))
    epochs_left = facts.epoch < facts.epochs
    if facts.stopping and epochs_left:
        return Decision(Verdict.STOP, STOPPED_REASON)
    # After the last epoch the trial ends anyway: no pruner query.
    if (
        facts.reported
        and epochs_left
        and should_consider_pruning(facts.epoch, facts.strategy)
        and pruner_says_prune()
    ):
        return Decision(
            Verdict.PRUNE, f"pruned by the {facts.pruner} pruner after epoch {facts.epoch}"
        )
    return GO_ON


def ended_reason(status: StudyStatus | str) -> str:
    """The ``fail_reason`` of a trial whose study is no longer running."""
    return CANCELLED_REASON if status is StudyStatus.CANCELLED else f"study {status}"


def is_healthy(decision: Decision) -> bool:
    """Whether a trial with this verdict trained on healthy through its epoch."""
    return decision.verdict in (Verdict.CONTINUE, Verdict.PRUNE)


def finished_outcome(
    result: TrialResult,
    decision: Decision,
    diverged: str | None = None,
    round_healthy: bool = False,
    failure_round: int | None = None,
) -> Outcome:
    """The outcome of a training that returned, given the last verdict taken on it.

    ``diverged``: the divergence reason when the trial's loss became NaN or infinite; it then
    fails, counting towards the streak unless another trial of its study and round
    (``round_healthy``) trained on healthy.
    """
    if diverged is not None:
        return Outcome(
            TrialState.FAIL,
            result,
            diverged,
            not round_healthy,
            failure_round,
            FailureKind.DIVERGED,
        )
    if decision.verdict is Verdict.CONTINUE:
        return Outcome(TrialState.COMPLETE, result, failure_round=failure_round)
    if decision.verdict is Verdict.PRUNE:
        return Outcome(TrialState.PRUNED, result, decision.reason, failure_round=failure_round)
    kind = FailureKind.CANCELLED if decision.verdict is Verdict.CANCEL else FailureKind.STOPPED
    return Outcome(
        TrialState.FAIL, result, decision.reason, failure_round=failure_round, failure_kind=kind
    )


def checked_outcome(
    outcome: Outcome, values: Sequence[float] | None, error: str | None = None
) -> Outcome:
    """A COMPLETE outcome whose objective values could not be computed (``error``) or are not
    finite becomes a FAIL that counts towards the streak; any other outcome is unchanged."""
    if outcome.state is not TrialState.COMPLETE:
        return outcome
    if error is not None:
        reason = f"no objective value: {error}"
    elif values is not None and not all(math.isfinite(v) for v in values):
        reason = f"objective value is not finite: {list(values)}"
    else:
        return outcome
    return replace(
        outcome,
        state=TrialState.FAIL,
        reason=reason,
        counts_as_failure=True,
        failure_kind=FailureKind.ERROR,
    )


def failure_of(exc: BaseException, failure_round: int | None = None) -> Outcome:
    """The FAIL outcome of an exception raised by training (not an out-of-memory).

    A `DataError` (the experiment's data missing or corrupt on this machine) is the worker's
    failure, not the trial's: it never counts towards the study's streak."""
    if isinstance(exc, DataError):
        return Outcome(
            TrialState.FAIL,
            reason=str(exc),
            failure_round=failure_round,
            failure_kind=FailureKind.WORKER_SETUP,
        )
    kind = FailureKind.ERROR
    if isinstance(exc, TrainingDiverged):
        kind = FailureKind.DIVERGED
    elif isinstance(exc, ConfigError):
        kind = FailureKind.BAD_CONFIG
    if isinstance(exc, TrainingDiverged | ConfigError):
        reason = str(exc)
    else:
        reason = f"{type(exc).__name__}: {exc}"
    return Outcome(
        TrialState.FAIL,
        reason=reason,
        counts_as_failure=True,
        failure_round=failure_round,
        failure_kind=kind,
    )


def out_of_memory(exc: BaseException, device: str, batch_size: int) -> Outcome:
    """The FAIL outcome of a trial out of memory alone (K=1): a resource failure, which says
    nothing about the study's search space and so does not count towards its streak."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no details"
    reason = f"out of memory on {device} training 1 trial (K=1, batch_size {batch_size}): {first}"
    return Outcome(
        TrialState.FAIL,
        reason=reason,
        counts_as_failure=False,
        failure_kind=FailureKind.OUT_OF_MEMORY,
    )


def stopped_outcome(result: TrialResult | None = None, reason: str = "") -> Outcome:
    """The FAIL outcome of a trial its worker stopped (``reason`` default: `STOPPED_REASON`)."""
    return Outcome(
        TrialState.FAIL, result, reason or STOPPED_REASON, failure_kind=FailureKind.STOPPED
    )


def ended_outcome(status: StudyStatus | str) -> Outcome:
    """The FAIL outcome of a trial whose study ended before it trained."""
    kind = FailureKind.CANCELLED if status is StudyStatus.CANCELLED else FailureKind.STOPPED
    return Outcome(TrialState.FAIL, reason=ended_reason(status), failure_kind=kind)


@dataclass(frozen=True)
class FailureStreak:
    """A study's failures in a row on this worker.

    ``rounds`` counts rounds (a trial alone, or an epoch of a batch), ``trials`` the failed
    trials among them; ``round`` is the `Outcome.failure_round` last counted.
    """

    rounds: int = 0
    trials: int = 0
    round: int | None = None
    last: str | None = None


def next_streak(
    streak: FailureStreak, outcome: Outcome, threshold: int
) -> tuple[FailureStreak, str | None]:
    """The streak after ``outcome``, and the study's failure message once it reaches
    ``threshold`` rounds (None: the study goes on).

    A COMPLETE or PRUNED trial resets it; a FAIL that does not count leaves it as it is; the
    failures of one round count once.
    """
    if outcome.state is not TrialState.FAIL:
        return FailureStreak(), None
    if not outcome.counts_as_failure:
        return streak, None
    same_round = outcome.failure_round is not None and outcome.failure_round == streak.round
    streak = FailureStreak(
        rounds=streak.rounds if same_round else streak.rounds + 1,
        trials=streak.trials + 1,
        round=outcome.failure_round,
        last=outcome.reason,
    )
    if same_round or streak.rounds < threshold:
        return streak, None
    rounds = (
        ""
        if streak.trials == streak.rounds
        else (f" ({streak.trials} trials in {streak.rounds} batch epochs)")
    )
    return streak, f"{streak.rounds} trials failed in a row{rounds}; last: {outcome.reason}"


def exit_reason(
    trials_started: int,
    max_trials: int | None,
    idle_for_s: float | None,
    idle_exit_s: float | None,
) -> str | None:
    """Why the worker stops looking for work (None: it goes on)."""
    if max_trials is not None and trials_started >= max_trials:
        return f"reached --max-trials {max_trials}"
    if idle_for_s is not None and idle_exit_s is not None and idle_for_s >= idle_exit_s:
        return f"idle for {idle_for_s:.0f} s"
    return None


def next_idle_sleep(sleep: float, longest: float) -> float:
    """The sleep after ``sleep`` without work: doubled, at most ``longest``."""
    return min(sleep * 2, longest)


__all__ = [
    "CANCELLED_REASON",
    "GO_ON",
    "STOPPED_REASON",
    "Decision",
    "EpochFacts",
    "FailureStreak",
    "Outcome",
    "Verdict",
    "checked_outcome",
    "ended_outcome",
    "ended_reason",
    "epoch_verdict",
    "exit_reason",
    "failure_of",
    "finished_outcome",
    "is_healthy",
    "next_idle_sleep",
    "next_streak",
    "out_of_memory",
    "stopped_outcome",
]
