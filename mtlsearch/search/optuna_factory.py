"""Optuna samplers, pruners and studies built from a `StudySpec`."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from mtlsearch.search.batch_tpe import BatchTPESampler
from mtlsearch.search.objective import directions
from mtlsearch.search.space import grid_search_space
from mtlsearch.search.spec import ParamChoices, ParamRange, SpecError, StudySpec
from mtlsearch.search.study_labels import label_study

if TYPE_CHECKING:
    from mtl_core.experiments import Experiment

logger = logging.getLogger(__name__)

#: The study user attribute holding the spec (as JSON).
SPEC_ATTR = "spec"
#: Spec fields that may change when a study is resumed (the budget, not what is searched).
_RESUMABLE_FIELDS = frozenset({"n_trials", "time_budget_s"})


class AskTellGridSampler(optuna.samplers.GridSampler):
    """`GridSampler` that also works with ``study.ask()`` / ``study.tell()`` (the workers).

    Optuna's grid sampler calls ``study.stop()`` after the last grid point, which raises
    RuntimeError outside ``study.optimize``: ``tell`` would fail although it stored the trial.
    Inside ``optimize`` it still stops the loop; with ask/tell the caller's own trial budget
    (the grid's size at most) ends the study.
    """

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        try:
            super().after_trial(study, trial, state, values)
        except RuntimeError:
            logger.debug("grid of study %r exhausted (ask/tell)", study.study_name)


def _experiment(spec: StudySpec, experiment: Experiment | None) -> Experiment:
    if experiment is not None:
        return experiment
    from mtl_core.experiments import get_experiment

    return get_experiment(spec.experiment)


def build_sampler(
    spec: StudySpec, experiment: Experiment | None = None
) -> optuna.samplers.BaseSampler:
    """The sampler named by ``spec.sampler``, seeded with ``spec.seed``.

    TPE is multivariate with ``group=True`` (it models each conditional sub-space, e.g. one
    strategy's parameters, jointly) and uses the constant liar: workers ask K trials before
    telling any, and without it TPE proposes nearly the same point K times. GP and NSGA-II
    model the parameters every trial shares and draw conditional ones at random. The grid
    sampler needs the experiment's task names (looked up by name when ``experiment`` is None).
    """
    seed = spec.seed
    if spec.sampler in ("tpe", "tpe_batch"):
        # tpe_batch: the same TPE, fitted once per batch of asks (`BatchTPESampler`).
        tpe = BatchTPESampler if spec.sampler == "tpe_batch" else optuna.samplers.TPESampler
        with warnings.catch_warnings():
            # ``group`` has been "experimental" since Optuna 2.8; it is what makes TPE model
            # define-by-run conditional spaces (one strategy's parameters) jointly.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # Explicit although recent Optuna defaults to it: running trials count as bad
            # ones, so the K trials of a batch, asked before any is told, spread out.
            return tpe(seed=seed, multivariate=True, group=True, constant_liar=True)
    if spec.sampler == "gp":
        # The GP models the parameters every trial has; conditional ones (a strategy's own)
        # are drawn at random by design, so Optuna's per-trial warning would only be noise.
        return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if spec.sampler == "grid":
        tasks = list(_experiment(spec, experiment).task_names)
        return AskTellGridSampler(grid_search_space(spec, tasks), seed=seed)
    raise SpecError("sampler", f"unknown sampler {spec.sampler!r}")  # unreachable: Literal


def max_epochs(spec: StudySpec, experiment: Experiment | None = None) -> int | None:
    """The most epochs any trial of the study trains (None when unknown)."""
    epochs = spec.search_space.epochs
    if isinstance(epochs, ParamRange):
        return int(epochs.high)
    if isinstance(epochs, ParamChoices):
        return int(max(float(c) for c in epochs.choices))
    if epochs is not None:
        return int(epochs)
    return experiment.defaults.epochs if experiment is not None else None


def build_pruner(
    spec: StudySpec, experiment: Experiment | None = None
) -> optuna.pruners.BasePruner:
    """The pruner named by ``spec.pruner``; steps are 1-based epochs.

    median: `MedianPruner` (5 startup trials; never before epoch 2, since the first epoch's
    value says little about a weighting that only acts over training); hyperband: `HyperbandPruner`
    from 1 epoch to the study's largest epoch count; none (and every multi-objective study,
    which Optuna cannot prune): `NopPruner`.
    """
    if spec.objective.kind == "multi" or spec.pruner == "none":
        return optuna.pruners.NopPruner()
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    if spec.pruner == "hyperband":
        resource: int | str = max_epochs(spec, experiment) or "auto"
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=resource)
    raise SpecError("pruner", f"unknown pruner {spec.pruner!r}")  # unreachable: Literal


def should_consider_pruning(epoch: int, strategy: str) -> bool:
    """Whether the pruner may judge a trial of ``strategy`` after (1-based) ``epoch``.

    Not during the strategy's warm-up (`WeightingStrategy.warmup_epochs`): DWA is uniform for
    two epochs, so its trials would be cut where a uniform trial is. The pruner's own warm-up
    (``n_warmup_steps``) applies as well: the two together prune only after both.
    """
    from mtl_core.weighting import STRATEGIES

    return epoch > STRATEGIES.get(strategy).warmup_epochs


def create_optuna_study(
    storage: str | optuna.storages.BaseStorage,
    spec: StudySpec,
    study_name: str | None = None,
    *,
    experiment: Experiment | None = None,
    load_if_exists: bool = False,
) -> optuna.Study:
    """Create the Optuna study of ``spec`` (directions, sampler, pruner; the spec as user attr;
    for the dashboard, the objectives' names and a note, `mtlsearch.search.study_labels`).

    Args:
        storage: an Optuna storage or its URL.
        spec: the study spec.
        study_name: the Optuna study name; default ``spec.name``.
        experiment: the spec's experiment (looked up by name when None).
        load_if_exists: load an existing study of that name instead of failing; its stored
            spec must then match ``spec`` except for the budget (n_trials, time_budget_s).

    Raises:
        SpecError: the existing study was created from a different spec.
        optuna.exceptions.DuplicatedStudyError: it exists and ``load_if_exists`` is False.
    """
    experiment = _experiment(spec, experiment)
    name = study_name or spec.name
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        sampler=build_sampler(spec, experiment),
        pruner=build_pruner(spec, experiment),
        directions=directions(spec, experiment),
        load_if_exists=load_if_exists,
    )
    stored = study.user_attrs.get(SPEC_ATTR)
    current = spec.model_dump(mode="json")
    if stored is None:
        study.set_user_attr(SPEC_ATTR, current)
        label_study(study, spec, experiment)
    elif _searched(stored) != _searched(current):
        raise SpecError(
            "name",
            f"study {name!r} already exists with a different spec; choose another name",
        )
    return study


def _searched(spec_json: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec_json.items() if k not in _RESUMABLE_FIELDS}


def spec_from_study(study: optuna.Study) -> StudySpec:
    """The spec a study was created from (its ``spec`` user attribute)."""
    try:
        data = study.user_attrs[SPEC_ATTR]
    except KeyError:
        raise ValueError(
            f"study {study.study_name!r} has no {SPEC_ATTR!r} user attribute"
        ) from None
    return StudySpec.model_validate(data)
