"""The worker's decisions as pure functions: no database, no study."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from optuna.trial import TrialState

from mtl_core.config import TrialConfig
from mtl_core.errors import TrainingDiverged
from mtl_core.experiments import get_experiment
from mtl_core.results import TrialResult
from mtl_core.trial_setup import resolve_config
from mtlsearch.worker.decisions import (
    CANCELLED_REASON,
    GO_ON,
    STOPPED_REASON,
    Decision,
    EpochFacts,
    FailureStreak,
    Outcome,
    Verdict,
    checked_outcome,
    epoch_verdict,
    exit_reason,
    failure_of,
    finished_outcome,
    next_idle_sleep,
    next_streak,
    out_of_memory,
)
from storage import StudyStatus


def facts(**changes: object) -> EpochFacts:
    values: dict[str, object] = {
        "study_status": StudyStatus.RUNNING,
        "stopping": False,
        "epoch": 2,
        "epochs": 5,
        "reported": True,
        "strategy": "fixed",
        "pruner": "median",
    }
    values.update(changes)
    return EpochFacts(**values)  # type: ignore[arg-type]


def never_asked() -> bool:
    raise AssertionError("the pruner must not be asked")


def test_a_cancelled_study_cancels_its_trial_even_in_its_last_epoch() -> None:
    decision = epoch_verdict(facts(study_status=StudyStatus.CANCELLED, epoch=5), never_asked)
    assert decision == Decision(Verdict.CANCEL, CANCELLED_REASON)
    failed = epoch_verdict(facts(study_status=StudyStatus.FAILED), never_asked)
    assert failed == Decision(Verdict.CANCEL, "study failed")
    assert epoch_verdict(facts(study_status="deleted"), never_asked).reason == "study deleted"


def test_stopping_stops_a_trial_with_epochs_left_only() -> None:
    assert epoch_verdict(facts(stopping=True), never_asked) == Decision(
        Verdict.STOP, STOPPED_REASON
    )
    assert epoch_verdict(facts(stopping=True, epoch=5), never_asked) == GO_ON


def test_the_pruner_is_asked_only_with_a_value_epochs_left_and_past_the_warm_up() -> None:
    assert epoch_verdict(facts(), lambda: True) == Decision(
        Verdict.PRUNE, "pruned by the median pruner after epoch 2"
    )
    assert epoch_verdict(facts(), lambda: False) == GO_ON
    assert epoch_verdict(facts(reported=False), never_asked) == GO_ON
    assert epoch_verdict(facts(epoch=5), never_asked) == GO_ON
    # DWA weighs from its third epoch on: no pruning before then.
    assert epoch_verdict(facts(strategy="dwa", epoch=2), never_asked) == GO_ON
    assert epoch_verdict(facts(strategy="dwa", epoch=3), lambda: True).verdict is Verdict.PRUNE


def result(stop_reason: str | None = None) -> TrialResult:
    config = resolve_config(TrialConfig(experiment="synthetic"), get_experiment("synthetic"))
    return TrialResult(config, 1, {}, {}, {}, [], stop_reason=stop_reason)


def test_a_finished_trial_ends_as_its_last_verdict_says() -> None:
    done = result()
    assert finished_outcome(done, GO_ON).state is TrialState.COMPLETE
    pruned = finished_outcome(done, Decision(Verdict.PRUNE, "pruned"))
    assert (pruned.state, pruned.reason) == (TrialState.PRUNED, "pruned")
    cancelled = finished_outcome(done, Decision(Verdict.CANCEL, CANCELLED_REASON))
    assert (cancelled.state, cancelled.counts_as_failure) == (TrialState.FAIL, False)


def test_a_diverged_trial_counts_unless_its_round_trained_on_healthy() -> None:
    alone = finished_outcome(result(), GO_ON, diverged="NaN", failure_round=7)
    assert (alone.state, alone.reason, alone.counts_as_failure) == (TrialState.FAIL, "NaN", True)
    assert alone.failure_round == 7
    beside_healthy = finished_outcome(result(), GO_ON, diverged="NaN", round_healthy=True)
    assert beside_healthy.state is TrialState.FAIL and not beside_healthy.counts_as_failure


def test_objective_values_that_are_missing_or_not_finite_fail_the_trial() -> None:
    complete = Outcome(TrialState.COMPLETE, result())
    assert checked_outcome(complete, [0.5]) is complete
    nan = checked_outcome(complete, [0.5, math.nan])
    assert nan.state is TrialState.FAIL and nan.counts_as_failure
    assert nan.reason == "objective value is not finite: [0.5, nan]"
    missing = checked_outcome(complete, None, "no test metric")
    assert missing.reason == "no objective value: no test metric"
    pruned = Outcome(TrialState.PRUNED, result(), "pruned")
    assert checked_outcome(pruned, [math.inf]) is pruned


def test_failures_of_training_and_of_memory() -> None:
    diverged = failure_of(TrainingDiverged("loss of task a is NaN or infinite"))
    assert diverged.reason == "loss of task a is NaN or infinite" and diverged.counts_as_failure
    crash = failure_of(RuntimeError("boom"), failure_round=3)
    assert (crash.reason, crash.failure_round) == ("RuntimeError: boom", 3)
    oom = out_of_memory(RuntimeError("CUDA out of memory.\ndetails"), "cuda:0", 64)
    assert oom.reason == (
        "out of memory on cuda:0 training 1 trial (K=1, batch_size 64): CUDA out of memory."
    )
    assert not oom.counts_as_failure


def fail(round_: int | None = None, counts: bool = True, reason: str = "x") -> Outcome:
    return Outcome(TrialState.FAIL, reason=reason, counts_as_failure=counts, failure_round=round_)


def test_the_streak_fails_the_study_at_the_threshold_with_todays_message() -> None:
    streak = FailureStreak()
    for reason in ("a", "b"):
        streak, message = next_streak(streak, fail(reason=reason), 3)
        assert message is None
    streak, message = next_streak(streak, fail(reason="c"), 3)
    assert message == "3 trials failed in a row; last: c"


def test_failures_of_one_round_count_once() -> None:
    streak = FailureStreak()
    for _ in range(4):
        streak, message = next_streak(streak, fail(round_=1), 2)
        assert message is None
    streak, message = next_streak(streak, fail(round_=2, reason="last"), 2)
    assert message == "2 trials failed in a row (5 trials in 2 batch epochs); last: last"


outcomes = st.one_of(
    st.builds(
        fail,
        st.one_of(st.none(), st.integers(0, 3)),
        st.booleans(),
    ),
    st.sampled_from([Outcome(TrialState.COMPLETE), Outcome(TrialState.PRUNED)]),
)


@given(st.lists(outcomes, max_size=30), st.integers(1, 6))
def test_the_streak_counts_the_rounds_of_counted_failures_since_the_last_success(
    sequence: list[Outcome], threshold: int
) -> None:
    streak = FailureStreak()
    for index, outcome in enumerate(sequence):
        streak, message = next_streak(streak, outcome, threshold)
        since: list[Outcome] = []
        for earlier in sequence[: index + 1]:
            since = [] if earlier.state is not TrialState.FAIL else [*since, earlier]
        counted = [o for o in since if o.counts_as_failure]
        rounds = sum(
            1
            for i, o in enumerate(counted)
            if o.failure_round is None or i == 0 or counted[i - 1].failure_round != o.failure_round
        )
        assert streak.rounds == rounds and streak.trials == len(counted)
        # The message comes exactly when a new round reaches the threshold or more.
        new_round = (
            bool(counted)
            and counted[-1] is outcome
            and (
                outcome.failure_round is None
                or len(counted) == 1
                or counted[-2].failure_round != outcome.failure_round
            )
        )
        assert (message is not None) == (new_round and rounds >= threshold)


def test_the_loop_exits_at_max_trials_or_after_idling_long_enough() -> None:
    assert exit_reason(3, 3, None, None) == "reached --max-trials 3"
    assert exit_reason(2, 3, None, None) is None
    assert exit_reason(0, None, 5.0, 5.0) == "idle for 5 s"
    assert exit_reason(0, None, 4.9, 5.0) is None
    assert exit_reason(0, None, 1e9, None) is None


@pytest.mark.parametrize(("sleep", "after"), [(0.2, 0.4), (3.0, 5.0), (5.0, 5.0)])
def test_the_idle_sleep_doubles_up_to_the_longest(sleep: float, after: float) -> None:
    assert next_idle_sleep(sleep, 5.0) == after
