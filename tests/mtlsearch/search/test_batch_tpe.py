"""`BatchTPESampler`: Optuna's TPE at K = 1, one fit per batch of asks beyond it."""

from __future__ import annotations

import warnings

import optuna
import pytest
from optuna.distributions import BaseDistribution
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator
from optuna.trial import FrozenTrial

from mtlsearch.search.batch_tpe import BatchTPESampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sampler(cls: type[optuna.samplers.TPESampler], seed: int) -> optuna.samplers.TPESampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(seed=seed, multivariate=True, group=True, constant_liar=True)


def _suggest(trial: optuna.Trial) -> float:
    """A study-like space: a weight, a strategy choice and one strategy's own parameter."""
    weight = trial.suggest_float("weight", 0.01, 100.0, log=True)
    strategy = trial.suggest_categorical("strategy", ["fixed", "mgda", "cagrad"])
    value = abs(weight - 3.0) + {"fixed": 0.5, "mgda": 0.2, "cagrad": 0.0}[strategy]
    if strategy == "cagrad":
        value += trial.suggest_float("c", 0.1, 0.9) ** 2
    return value


@pytest.mark.parametrize("seed", [0, 7])
def test_with_one_trial_per_batch_it_proposes_what_tpe_proposes(seed: int) -> None:
    studies = [
        optuna.create_study(sampler=_sampler(cls, seed))
        for cls in (optuna.samplers.TPESampler, BatchTPESampler)
    ]
    for _ in range(40):
        trials = [study.ask() for study in studies]
        values = [_suggest(trial) for trial in trials]
        assert trials[0].params == trials[1].params
        for study, trial, value in zip(studies, trials, values, strict=True):
            study.tell(trial, value)


def _told(study: optuna.Study, n: int) -> None:
    for _ in range(n):
        trial = study.ask()
        x, y = trial.suggest_float("x", 0.0, 1.0), trial.suggest_float("y", 0.0, 1.0)
        study.tell(trial, (x - 0.3) ** 2 + (y - 0.6) ** 2)


def test_a_batch_of_asks_is_one_fit_and_a_finished_trial_refits() -> None:
    sampler = _sampler(BatchTPESampler, 3)
    assert isinstance(sampler, BatchTPESampler)
    study = optuna.create_study(sampler=sampler)
    _told(study, 15)  # past TPE's 10 random start-up trials
    before = sampler.fit_count
    batch = [study.ask() for _ in range(8)]
    points = [(t.suggest_float("x", 0.0, 1.0), t.suggest_float("y", 0.0, 1.0)) for t in batch]
    assert sampler.fit_count == before + 1
    # Each ask draws its own candidates from the shared fit.
    assert len(set(points)) == len(points)
    study.tell(batch[0], 0.0)
    _told(study, 1)  # the first ask after a finished trial refits
    assert sampler.fit_count == before + 2


def test_tpe_refits_at_every_ask_of_a_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the batch sampler saves: Optuna's TPE builds its estimators per ask.
    sampler = _sampler(optuna.samplers.TPESampler, 3)
    study = optuna.create_study(sampler=sampler)
    _told(study, 15)
    builds = 0
    build = sampler._build_parzen_estimator

    def counting(
        study: optuna.Study,
        search_space: dict[str, BaseDistribution],
        trials: list[FrozenTrial],
        handle_below: bool,
    ) -> _ParzenEstimator:
        nonlocal builds
        builds += 1
        return build(study, search_space, trials, handle_below)

    monkeypatch.setattr(sampler, "_build_parzen_estimator", counting)
    for _ in range(8):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0), trial.suggest_float("y", 0.0, 1.0)
    assert builds == 2 * 8  # the good and the bad trials' estimators, at each ask


def test_within_asking_batch_a_trial_finishing_meanwhile_does_not_refit() -> None:
    # The worker's teller finishes trials while its asker asks a batch: the batch is still
    # one fit, and the history is not read again at each ask.
    sampler = _sampler(BatchTPESampler, 5)
    assert isinstance(sampler, BatchTPESampler)
    study = optuna.create_study(sampler=sampler)
    _told(study, 15)
    before = sampler.fit_count
    with sampler.asking_batch():
        first = study.ask()
        first.suggest_float("x", 0.0, 1.0), first.suggest_float("y", 0.0, 1.0)
        study.tell(first, 0.5)  # finishes while the batch is asked
        for _ in range(5):
            trial = study.ask()
            trial.suggest_float("x", 0.0, 1.0), trial.suggest_float("y", 0.0, 1.0)
    assert sampler.fit_count == before + 1
    with sampler.asking_batch():  # the next batch fits afresh
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
    assert sampler.fit_count == before + 2
