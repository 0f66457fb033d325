"""Planning a study's confirmation and reading it: `mtlsearch.search.confirmation`, `answer`."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from mtl_core.experiments import get_experiment
from mtlsearch.search.answer import best_answer
from mtlsearch.search.confirmation import (
    CONFIRMATION_SEED_OFFSET,
    UNIFORM,
    Spread,
    confirmation_seeds,
    judge,
    plan,
)
from mtlsearch.search.spec import StudySpec
from storage import TrialRow
from storage.models import TrialKind, TrialState, params_key
from tests.utils.specs import quick_spec

EXPERIMENT = get_experiment("synthetic")
NOW = datetime(2026, 12, 7, tzinfo=UTC)


def spec(**confirmation: Any) -> StudySpec:
    return StudySpec.model_validate(
        quick_spec("c", n_trials=6, seed=3, confirmation={"enabled": True, **confirmation})
    )


def row(number: int | None, value: float, weight: float, **changes: Any) -> TrialRow:
    params = {"w_classification": weight}
    config = {
        "experiment": "synthetic",
        "weights": {"regression": 1.0, "classification": weight},
        "strategy": "fixed",
        "seed": 3,
    }
    base = TrialRow(
        id=number if number is not None else 1000,
        study_id="s",
        number=number,
        optuna_trial_id=number,
        state=TrialState.COMPLETE,
        kind=TrialKind.SEARCH,
        confirms=None,
        worker_id="w",
        params=params,
        config=config,
        weights_normalised=None,
        values=[value],
        value=value,
        val_metrics={"regression": value, "classification": value},
        test_metrics={"regression": value, "classification": value},
        strategy_weights=None,
        weights_trajectory=None,
        epochs_run=2,
        seed=3,
        num_slots=1,
        reason=None,
        failure_kind=None,
        retry_of=None,
        reserved_at=NOW,
        started_at=NOW,
        finished_at=NOW,
    )
    return replace(base, **changes)


def test_plan_confirms_the_best_distinct_configurations_and_uniform_at_new_seeds() -> None:
    rows = [
        row(0, 0.5, 2.0),
        row(1, 0.9, 3.0),
        row(2, 0.7, 3.0),  # a repeat of 1: its mean 0.8 still ranks first
        row(3, 0.6, 4.0),
        row(4, 0.95, 5.0, state=TrialState.PRUNED),  # not complete: not a candidate
    ]
    runs = plan(rows, spec(top=2, seeds=2), EXPERIMENT)
    seeds = confirmation_seeds(spec(top=2, seeds=2))
    assert seeds == [3 + CONFIRMATION_SEED_OFFSET, 4 + CONFIRMATION_SEED_OFFSET]
    keys = [params_key({"w_classification": w}) for w in (3.0, 4.0)]
    assert [(r.confirms, r.seed) for r in runs] == [
        (key, seed) for seed in seeds for key in (*keys, UNIFORM)
    ]
    uniform = next(r for r in runs if r.confirms == UNIFORM)
    assert uniform.params is None and uniform.config["strategy"] == "fixed"
    assert uniform.config["weights"] == {"regression": 1.0, "classification": 1.0}
    assert all(r.config["seed"] == r.seed and r.config["data_seed"] is None for r in runs)


def test_plan_is_empty_when_turned_off_or_nothing_completed() -> None:
    assert plan([row(0, 0.5, 2.0)], spec(enabled=False), EXPERIMENT) == []
    assert plan([row(0, 0.5, 2.0, state=TrialState.FAIL)], spec(), EXPERIMENT) == []


@pytest.mark.parametrize(
    ("best", "uniform", "judgement"),
    [
        ([1.0, 1.1, 0.9], [0.5, 0.6, 0.4], "better"),
        ([0.5, 0.6, 0.4], [1.0, 1.1, 0.9], "worse"),
        ([0.52, 0.6, 0.4], [0.5, 0.62, 0.41], "within_noise"),
    ],
)
def test_judge_counts_a_difference_beyond_two_standard_errors(
    best: list[float], uniform: list[float], judgement: str
) -> None:
    a, b = Spread.of(best), Spread.of(uniform)
    assert a is not None and b is not None
    assert judge(a, b)[0] == judgement


def _confirmation(key: str, values: list[float], weight: float | None) -> list[TrialRow]:
    out = []
    for i, value in enumerate(values):
        seed = CONFIRMATION_SEED_OFFSET + 3 + i
        out.append(
            row(
                None,
                value,
                weight if weight is not None else 1.0,
                id=2000 + len(key) * 10 + i,
                kind=TrialKind.CONFIRMATION,
                confirms=key,
                seed=seed,
                params=None if weight is None else {"w_classification": weight},
            )
        )
    return out


def test_the_answer_picks_by_the_mean_and_says_the_verdict() -> None:
    lucky, steady = row(0, 0.99, 2.0), row(1, 0.8, 3.0)
    key_lucky = params_key({"w_classification": 2.0})
    key_steady = params_key({"w_classification": 3.0})
    rows = [
        lucky,
        steady,
        *_confirmation(key_lucky, [0.6, 0.62, 0.58], 2.0),
        *_confirmation(key_steady, [0.8, 0.82, 0.79], 3.0),
        *_confirmation(UNIFORM, [0.5, 0.52, 0.49], None),
    ]
    record = best_answer(rows, spec(), EXPERIMENT, None)
    assert record is not None
    assert record["number"] == 1  # the steady one: the lucky trial's mean is lower
    assert record["values"] == [pytest.approx((0.8 + 0.82 + 0.79) / 3)]
    assert record["search_values"] == [0.8]
    assert record["confirmed"]["objective"][0]["n"] == 3
    verdict = record["confirmation"]["verdict"]
    assert verdict["judgement"] == "better" and verdict["unit"] == "objective points"
    assert verdict["text"].startswith("better than uniform weights by 0.3")
    assert "more than the seed noise" in verdict["text"]
    assert record["confirmation"]["uniform"]["objective"][0]["mean"] == pytest.approx(
        0.503333, 1e-4
    )
    assert [c["confirms"] for c in record["confirmation"]["configurations"]] == [
        key_steady,
        key_lucky,
    ]


def test_the_answer_without_confirmation_says_so() -> None:
    record = best_answer([row(0, 0.9, 2.0)], spec(), EXPERIMENT, None)
    assert record is not None and record["confirmation"] is None and record["number"] == 0


def test_one_seed_gives_no_verdict_in_numbers() -> None:
    key = params_key({"w_classification": 2.0})
    rows = [
        row(0, 0.9, 2.0),
        *_confirmation(key, [0.7], 2.0),
        *_confirmation(UNIFORM, [0.5], None),
    ]
    record = best_answer(rows, spec(seeds=1), EXPERIMENT, None)
    assert record is not None
    assert record["confirmation"]["verdict"]["judgement"] == "unknown"
    assert "2 or more seeds" in record["confirmation"]["verdict"]["text"]
