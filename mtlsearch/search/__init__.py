"""Study specification, search space, objective and Optuna plumbing shared by the service,
the workers and the CLI."""

from __future__ import annotations

from mtlsearch.search.objective import (
    directions,
    intermediate_value,
    objective_values,
    values_from_metrics,
)
from mtlsearch.search.optuna_factory import (
    SPEC_ATTR,
    build_pruner,
    build_sampler,
    create_optuna_study,
    should_consider_pruning,
    spec_from_study,
)
from mtlsearch.search.space import (
    grid_search_space,
    normalised_weights,
    suggest_trial_config,
    trial_config_from_params,
)
from mtlsearch.search.spec import (
    ComponentChoice,
    Objective,
    ParamChoices,
    ParamRange,
    SearchSpace,
    SpecError,
    StrategyChoice,
    StudySpec,
    WeightChoices,
    WeightRange,
    describe_validation_error,
)
from mtlsearch.search.spec_checks import validate_against_experiment

__all__ = [
    "SPEC_ATTR",
    "ComponentChoice",
    "Objective",
    "ParamChoices",
    "ParamRange",
    "SearchSpace",
    "SpecError",
    "StrategyChoice",
    "StudySpec",
    "WeightChoices",
    "WeightRange",
    "build_pruner",
    "build_sampler",
    "create_optuna_study",
    "describe_validation_error",
    "directions",
    "grid_search_space",
    "intermediate_value",
    "normalised_weights",
    "objective_values",
    "should_consider_pruning",
    "spec_from_study",
    "suggest_trial_config",
    "trial_config_from_params",
    "validate_against_experiment",
    "values_from_metrics",
]
