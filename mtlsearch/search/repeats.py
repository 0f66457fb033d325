"""Repeated configurations: a trial that samples a configuration already in the study.

A parameter-free strategy (PCGrad, uncertainty, ...) under fixed weights has nothing left to
search, so the sampler proposes it again and again; trained at the same seed it would give the
same result each time. Such a repeat trains at a new seed instead, which turns the budget it
spends into a noise estimate. The rule, in `distinct_seed`:

* the configuration of a trial is its Optuna params (the spec rebuilds everything else);
* a trial repeats the earliest trial of the study, numbered before it and COMPLETE, PRUNED,
  RUNNING (or, in local runs, WAITING) that has the same params; in the service, the study's
  ``mtl_trials`` rows answer this, so a queued retry (WAITING, not yet a row) is not counted;
* a repeat trains at seed ``base + trial.number`` (``base``: the spec's ``seed``, 0 when unset),
  which no other trial of the study uses; any other trial trains at ``base``.

A repeat records the user attributes ``seed`` (its new seed) and ``repeat_of`` (the number of
the trial it repeats); any other trial trains at the seed of its ``config`` and writes nothing
more (each attribute is a database round trip on the worker's hot path).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from optuna.trial import TrialState

from mtlsearch.search.results import set_user_attrs

if TYPE_CHECKING:
    import optuna

    from mtl_core.config import TrialConfig

logger = logging.getLogger(__name__)

#: User attribute of a repeat: the seed it trains at.
SEED_ATTR = "seed"
#: User attribute: the number of the earlier trial whose configuration a trial repeats.
REPEAT_OF_ATTR = "repeat_of"
#: Trials whose configuration a new trial must not re-run at their seed (failed ones taught
#: nothing, so repeating them is fine).
_COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


def repeated_trial(trial: optuna.Trial) -> int | None:
    """The number of the earliest counted trial before ``trial`` with the same params, if any."""
    params = trial.params
    earlier = trial.study.get_trials(deepcopy=False, states=_COUNTED_STATES)
    matches = [t.number for t in earlier if t.number < trial.number and t.params == params]
    return min(matches, default=None)


def distinct_seed(trial: optuna.Trial, config: TrialConfig, original: int | None) -> TrialConfig:
    """``config`` (suggested on ``trial``) at the seed of the rule above; records the attrs.

    ``original``: the trial ``trial`` repeats, found after every parameter is suggested (the
    params are the configuration compared): `repeated_trial` for a study alone in Optuna (local
    runs), ``storage.TrialRepository.numbers_with_params`` for the service's studies (one indexed
    query per batch instead of reading every trial).
    """
    if original is None:
        return config
    seed = config.seed + trial.number
    logger.info(
        "trial %d repeats the configuration of trial %d: it trains at seed %d",
        trial.number,
        original,
        seed,
    )
    set_user_attrs(trial, {SEED_ATTR: seed, REPEAT_OF_ATTR: original})
    return config.model_copy(update={"seed": seed})
