"""TPE that fits its estimators once per batch of asks, not once per trial.

A worker asks the K trials of a batch before it tells any. Optuna's `TPESampler` refits its
two Parzen estimators over the whole history at every ask (at 10,000 trials most of an ask's
cost: the search-space decomposition, the split into good and bad trials and the fit), so a
batch costs K fits. `BatchTPESampler` keys a fit on the trials it reads (the finished ones,
and the running ones as constant liars) as they stood at the batch's first ask, and the next
asks reuse that fit, each drawing its own candidates from it:

- within `BatchTPESampler.asking_batch` (the worker asks its K trials of a study in one),
  every ask of the block reuses the fit of its first ask, whatever finishes meanwhile (the
  worker's teller finishes trials while the asker asks), and reads the history no more;
- outside one, a trial that finishes starts a new batch (a refit), so with one trial per
  batch (K = 1) it proposes exactly what `TPESampler` proposes.

It follows `TPESampler._sample` of the locked Optuna (5.1): the split, the two estimators,
the candidates and their acquisition values are Optuna's own methods; only the reuse of the
fit is ours. `tests/mtlsearch/search/test_batch_tpe.py` holds it to `TPESampler` trial by
trial at K = 1, so an Optuna upgrade that changes those internals fails there first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from optuna import Study
from optuna.distributions import BaseDistribution
from optuna.samplers import TPESampler
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator
from optuna.samplers._tpe.sampler import _split_trials, default_gamma, default_gamma_multiobjective
from optuna.trial import FrozenTrial, TrialState

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class BatchTPESampler(TPESampler):
    """`TPESampler` whose fit serves every ask until a trial finishes (see the module)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._batch: int | None = None  # the finished-trial count the cached fits read
        self._spaces: dict[int, dict[str, BaseDistribution]] = {}
        self._fits: dict[tuple[str, ...], tuple[_ParzenEstimator, _ParzenEstimator]] = {}
        self._in_block = False
        #: Fits made so far (read by the tests and the benchmarks).
        self.fit_count = 0

    @contextmanager
    def asking_batch(self) -> Iterator[None]:
        """Every ask within the block is one batch: one fit, made at its first ask."""
        self._batch, self._in_block = None, True
        try:
            yield
        finally:
            self._batch, self._in_block = None, False

    def _current_batch(self, study: Study) -> int:
        """The number of finished trials: a new one is new information, so a new batch
        (within `asking_batch`: the count at the block's first ask)."""
        if self._in_block and self._batch is not None:
            return self._batch
        finished = study._get_trials(deepcopy=False, states=_FINISHED, use_cache=True)
        count = len(finished)
        if count != self._batch:
            self._batch = count
            self._spaces = {}
            self._fits = {}
        return count

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        # The group decomposition reads every trial: once per batch too.
        batch = self._current_batch(study)
        if batch not in self._spaces:
            self._spaces[batch] = super().infer_relative_search_space(study, trial)
        return self._spaces[batch]

    def _sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        # `TPESampler._sample_relative` with the batch's count of finished trials, not a read.
        if search_space == {} or self._current_batch(study) < self._n_startup_trials:
            return {}
        return self._sample(study, trial, search_space)

    def _sample(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self._current_batch(study)
        key = tuple(f"{name}={dist!r}" for name, dist in sorted(search_space.items()))
        if key not in self._fits:
            self._fits[key] = self._fit(study, trial, search_space)
        below, above = self._fits[key]
        samples = below.sample(self._rng.rng, self._n_ei_candidates)
        values = self._compute_acquisition_func(samples, below, above)
        chosen = TPESampler._compare(samples, values)
        return {name: dist.to_external_repr(chosen[name]) for name, dist in search_space.items()}

    def _fit(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> tuple[_ParzenEstimator, _ParzenEstimator]:
        """The good and bad trials' estimators, as `TPESampler._sample` builds them."""
        states = [*_FINISHED, TrialState.RUNNING] if self._constant_liar else list(_FINISHED)
        trials = study._get_trials(deepcopy=False, states=states, use_cache=not self._constant_liar)
        if self._constant_liar:
            trials = [t for t in trials if t.number != trial.number]
        if self._gamma is None:
            multi = len(study.directions) > 1
            self._gamma = default_gamma_multiobjective if multi else default_gamma
        finished = sum(t.state != TrialState.RUNNING for t in trials)
        below_trials, above_trials = _split_trials(study, trials, self._gamma(finished))
        self.fit_count += 1
        return (
            self._build_parzen_estimator(study, search_space, below_trials, handle_below=True),
            self._build_parzen_estimator(study, search_space, above_trials, handle_below=False),
        )
