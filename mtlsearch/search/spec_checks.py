"""Checks of a study spec against its experiment and the registries (what `StudySpec` cannot
check alone): task names, the reference task, strategy / schedule / architecture names and
parameters, and the grid. Each failure is a `SpecError` naming the field, the bad value and the
valid choices.
"""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING, Any, Literal

from mtlsearch.search.components import component_params
from mtlsearch.search.spec import (
    ComponentChoice,
    ParamChoices,
    ParamRange,
    SpecError,
    StudySpec,
    is_integer_field,
    is_weight_one,
    reference_task,
)

if TYPE_CHECKING:
    from mtl_core.experiments import Experiment


def validate_against_experiment(
    spec: StudySpec, experiment: Experiment | None = None
) -> Experiment:
    """Check ``spec`` against its experiment and the registries; return the experiment.

    Checks: the experiment exists (when not given), weights / coefficients / baselines name
    known tasks, the reference task exists and has weight 1, strategy / schedule /
    architecture names exist, their parameters exist in each config class, and the fixed
    values and range ends build a valid config; the grid (for the grid sampler) is discrete
    and small enough over all the experiment's tasks.

    Raises:
        SpecError: naming the field, the bad value and the valid choices.
    """
    from mtl_core.registry import UnknownNameError

    if experiment is None:
        from mtl_core.experiments import get_experiment

        try:
            experiment = get_experiment(spec.experiment)
        except UnknownNameError as exc:
            raise SpecError("experiment", str(exc)) from None
    elif experiment.name != spec.experiment:
        raise SpecError(
            "experiment",
            f"spec names {spec.experiment!r} but was checked against {experiment.name!r}",
        )
    tasks = list(experiment.task_names)
    valid_tasks = ", ".join(tasks)
    space = spec.search_space

    def check_task(field: str, task: str) -> None:
        if task not in tasks:
            raise SpecError(
                field, f"unknown task {task!r}; tasks of {experiment.name!r}: {valid_tasks}"
            )

    for task in space.weights:
        check_task(f"search_space.weights.{task}", task)
    if space.reference_task is not None:
        check_task("search_space.reference_task", space.reference_task)
    ref = reference_task(spec, tasks)
    if ref in space.weights and not is_weight_one(space.weights[ref]):
        raise SpecError(
            f"search_space.weights.{ref}",
            f"{ref!r} is the reference task (weight 1 by definition; the first task unless "
            "reference_task says otherwise); remove its weight or set reference_task",
        )
    objective = spec.objective
    for field, mapping in (
        ("objective.coefficients", objective.coefficients),
        ("objective.baselines", objective.baselines),
    ):
        if mapping is None:
            continue
        for task in mapping:
            check_task(f"{field}.{task}", task)
        missing = [t for t in tasks if t not in mapping]
        if missing:
            raise SpecError(field, f"must name every task; missing: {', '.join(missing)}")

    _check_components(spec, experiment)
    if spec.population is not None:
        _check_population_explores(spec, experiment)
    if spec.sampler == "grid":
        from mtlsearch.search.space import grid_search_space

        grid_search_space(spec, tasks)
    return experiment


def _check_components(spec: StudySpec, experiment: Experiment) -> None:
    from mtl_core.architectures import ARCHITECTURES
    from mtl_core.components import parse_config
    from mtl_core.errors import ConfigError
    from mtl_core.schedules import SCHEDULES
    from mtl_core.weighting import STRATEGIES

    space = spec.search_space
    groups: list[tuple[str, str, list[ComponentChoice] | None, Any]] = [
        ("strategies", "strategy", space.strategies, STRATEGIES),
        ("schedules", "schedule", space.schedules, SCHEDULES),
        ("architectures", "architecture", space.architectures, ARCHITECTURES),
    ]
    for field, kind, choices, registry in groups:
        for i, choice in enumerate(choices or []):
            path = f"search_space.{field}.{i}"
            if choice.name not in registry:
                raise SpecError(
                    f"{path}.name",
                    f"unknown {kind} {choice.name!r}; valid choices: {', '.join(registry.names())}",
                )
            config_cls = registry.get(choice.name).config_cls
            known = list(config_cls.model_fields)
            for param, value in choice.params.items():
                if param not in known:
                    raise SpecError(
                        f"{path}.params.{param}",
                        f"{kind} {choice.name!r} has no parameter {param!r}; valid parameters: "
                        f"{', '.join(known) or 'none'}",
                    )
                annotation = config_cls.model_fields[param].annotation
                if isinstance(value, ParamRange) and typing.get_origin(annotation) is Literal:
                    allowed = ", ".join(repr(a) for a in typing.get_args(annotation))
                    raise SpecError(
                        f"{path}.params.{param}",
                        f"{kind} {choice.name!r}: {param!r} is one of {allowed}; give choices",
                    )
                if (
                    isinstance(value, ParamRange)
                    and is_integer_field(config_cls, param)
                    and not all(
                        isinstance(x, int) for x in (value.low, value.high, value.step or 1)
                    )
                ):
                    raise SpecError(
                        f"{path}.params.{param}",
                        f"{kind} {choice.name!r}: {param!r} is an integer; give integer "
                        f"low, high and step, got {value.model_dump()}",
                    )
            searched = component_params(kind, choice)
            base = {p: _candidates(v)[0] for p, v in searched.items()}
            # Build the config with each candidate value of each parameter (the others at a
            # representative value), so a bound outside the config's constraints fails now;
            # then the representative values alone (a component given no parameters).
            candidates: list[tuple[str | None, dict[str, Any]]] = [
                (param, {**base, param: candidate})
                for param, value in searched.items()
                for candidate in _candidates(value)
            ]
            candidates.append((None, base))
            for varied, params in candidates:
                try:
                    config = parse_config(kind, choice.name, config_cls, params)
                    if kind == "architecture":
                        _check_architecture_fits(registry.get(choice.name)(config), experiment)
                    if kind == "strategy":
                        _check_task_names(registry.get(choice.name), config, experiment, path)
                except ConfigError as exc:
                    blamed = _blame(kind, choice.name, config_cls, params) or varied
                    field_path = path if blamed is None else f"{path}.params.{blamed}"
                    raise SpecError(field_path, str(exc)) from None


def _blame(kind: str, name: str, config_cls: Any, params: dict[str, Any]) -> str | None:
    """The parameter whose value fails with the others at their defaults, if one does: the
    field to name when values only fail together (DSelect-k's ``k`` above ``num_experts``)."""
    from mtl_core.components import parse_config
    from mtl_core.errors import ConfigError

    for param, value in params.items():
        try:
            parse_config(kind, name, config_cls, {param: value})
        except ConfigError:
            return param
    return None


def _check_architecture_fits(architecture: Any, experiment: Experiment) -> None:
    """`Architecture.check_parts` on the experiment's network, where the experiment knows its
    data's shapes without reading them (otherwise the first trial checks)."""
    shapes = experiment.nominal_shapes()
    if shapes is not None:
        architecture.check_parts(experiment.parts_for(shapes))


def _check_task_names(strategy: Any, config: Any, experiment: Experiment, path: str) -> None:
    """The strategy's fields that name tasks (Auto-λ's ``primary``) name the experiment's."""
    for field in strategy.task_name_fields:
        for name in getattr(config, field):
            if name not in experiment.task_names:
                raise SpecError(
                    f"{path}.params.{field}",
                    f"strategy {strategy.name!r}: unknown task {name!r}; valid choices: "
                    f"{', '.join(experiment.task_names)}",
                )


def _check_population_explores(spec: StudySpec, experiment: Experiment) -> None:
    """A population has a weight to move: one the study searches for its strategy."""
    from mtl_core.config import TrialConfig
    from mtlsearch.search.population import PopulationPlan

    plan = PopulationPlan(spec)
    config = TrialConfig(experiment=experiment.name, strategy=spec.search_space.strategies[0].name)
    if not any(plan.explored(task, config, experiment) for task in experiment.task_names):
        raise SpecError(
            "population",
            "no weight to explore: search at least one task's weight other than the reference "
            "task's (a range or choices; under a dynamic strategy also set "
            "search_space.weights_for_dynamic: true)",
        )


def _candidates(value: Any) -> list[Any]:
    if isinstance(value, ParamRange):
        return [value.low, value.high]
    if isinstance(value, ParamChoices):
        return list(value.choices)
    return [value]


__all__ = ["validate_against_experiment"]
