"""From a `StudySpec` to Optuna suggestions and back to a `TrialConfig`.

Define-by-run: a trial first picks its strategy, then suggests only the parameters that
strategy uses. Parameter names read well in optuna-dashboard:

* ``w_<task>``: the weight of a non-reference task relative to the reference task (weight 1),
  suggested log-uniformly in [lo, hi] (that is, u = ln w uniform in [ln lo, ln hi]);
* ``strategy`` and ``<strategy>.<param>``;
* ``schedule``, ``schedule.<schedule>.<param>``, ``architecture``,
  ``architecture.<architecture>.<param>``;
* ``lr``, ``epochs``, ``batch_size``.

A dimension with a single possible value (a fixed number, ``lo == hi``, one choice, one
strategy) is not suggested at all. `suggest_trial_config` and `trial_config_from_params` walk
the same code, so a trial's params always rebuild the config it trained.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mtl_core.config import TrialConfig
from mtlsearch.search.components import component_config, component_params
from mtlsearch.search.spec import (
    MAX_GRID_POINTS,
    STATIC_STRATEGIES,
    ComponentChoice,
    ParamChoices,
    ParamRange,
    SpecError,
    StudySpec,
    WeightChoices,
    WeightRange,
    is_integer_field,
    reference_task,
)

if TYPE_CHECKING:
    import optuna

    from mtl_core.experiments import Experiment

WeightSpecValue = WeightRange | WeightChoices | float


def weight_param(task: str) -> str:
    """The Optuna parameter name of a task's weight."""
    return f"w_{task}"


def component_param(kind: str, component: str, param: str) -> str:
    """The Optuna parameter name of a strategy / schedule / architecture parameter."""
    return f"{component}.{param}" if kind == "strategy" else f"{kind}.{component}.{param}"


class _Picker(abc.ABC):
    """Where a value comes from: an Optuna trial's suggestion or a finished trial's params."""

    @abc.abstractmethod
    def float(self, name: str, low: float, high: float, *, log: bool, step: float | None) -> float:
        """A float in [low, high]."""

    @abc.abstractmethod
    def int(self, name: str, low: int, high: int, *, log: bool, step: int) -> int:
        """An integer in [low, high]."""

    @abc.abstractmethod
    def categorical(self, name: str, choices: Sequence[Any]) -> Any:
        """One of ``choices``."""


class _TrialPicker(_Picker):
    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def float(self, name: str, low: float, high: float, *, log: bool, step: float | None) -> float:
        return self.trial.suggest_float(name, low, high, log=log, step=step)

    def int(self, name: str, low: int, high: int, *, log: bool, step: int) -> int:
        return self.trial.suggest_int(name, low, high, log=log, step=step)

    def categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self.trial.suggest_categorical(name, list(choices))


class _ParamsPicker(_Picker):
    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = params

    def _get(self, name: str) -> Any:
        try:
            return self.params[name]
        except KeyError:
            raise ValueError(
                f"the trial has no parameter {name!r} that this spec suggests; it has "
                f"{', '.join(sorted(self.params)) or 'none'}"
            ) from None

    def float(self, name: str, low: float, high: float, *, log: bool, step: float | None) -> float:
        return float(self._get(name))

    def int(self, name: str, low: int, high: int, *, log: bool, step: int) -> int:
        return int(self._get(name))

    def categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._get(name)


def suggest_trial_config(
    trial: optuna.Trial, spec: StudySpec, experiment: Experiment, device: str = "cpu"
) -> TrialConfig:
    """Suggest one trial's parameters from ``spec`` and return the config to train.

    Args:
        trial: the Optuna trial to suggest on.
        spec: the study spec (already checked by `validate_against_experiment`).
        experiment: the spec's experiment (its task names order the weights).
        device: the device the trial trains on (a worker setting, not part of the spec).
    """
    return _build(_TrialPicker(trial), spec, experiment, device)


def trial_config_from_params(
    params: Mapping[str, Any], spec: StudySpec, experiment: Experiment, device: str = "cpu"
) -> TrialConfig:
    """Rebuild the config of a trial from its Optuna params (re-queued trials, the best trial)."""
    return _build(_ParamsPicker(params), spec, experiment, device)


def normalised_weights(weights: Mapping[str, float], tasks: Sequence[str]) -> dict[str, float]:
    """Scale ``weights`` so that they sum to the number of tasks T (tasks not named count 1).

    Raises:
        ValueError: when every weight is 0.
    """
    raw = {task: float(weights.get(task, 1.0)) for task in tasks}
    total = sum(raw.values())
    if total <= 0:
        raise ValueError(f"weights must not all be 0, got {raw}")
    return {task: value * len(tasks) / total for task, value in raw.items()}


def _build(pick: _Picker, spec: StudySpec, experiment: Experiment, device: str) -> TrialConfig:
    space = spec.search_space
    tasks = list(experiment.task_names)
    strategy, strategy_params = _pick_component(pick, "strategy", space.strategies)
    searched = strategy in STATIC_STRATEGIES or space.weights_for_dynamic
    weights = _pick_weights(pick, spec, tasks, searched)
    schedule: str = "joint"
    schedule_params: dict[str, Any] = {}
    if space.schedules:
        schedule, schedule_params = _pick_component(pick, "schedule", space.schedules)
    architecture: str | None = None
    architecture_params: dict[str, Any] = {}
    if space.architectures:
        architecture, architecture_params = _pick_component(
            pick, "architecture", space.architectures
        )
    return TrialConfig(
        experiment=spec.experiment,
        strategy=strategy,
        strategy_params=strategy_params,
        weights=weights,
        schedule=schedule,
        schedule_params=schedule_params,
        architecture=architecture,
        architecture_params=architecture_params,
        optimizer=space.optimizer,
        lr=_pick_number(pick, "lr", space.lr, integer=False),
        weight_decay=space.weight_decay or 0.0,
        epochs=_pick_number(pick, "epochs", space.epochs, integer=True),
        batch_size=_pick_number(pick, "batch_size", space.batch_size, integer=True),
        grad_clip=space.grad_clip,
        seed=spec.seed if spec.seed is not None else 0,
        data_seed=None,
        device=device,
        max_train_samples=space.max_train_samples,
    )


def _pick_weights(
    pick: _Picker, spec: StudySpec, tasks: list[str], searched: bool
) -> dict[str, float]:
    space = spec.search_space
    ref = reference_task(spec, tasks)
    weights: dict[str, float] = {}
    for task in tasks:
        if task == ref:
            weights[task] = 1.0
            continue
        ws = space.weights.get(task, space.default_weight)
        values = _weight_values(ws)
        if values is not None and len(values) == 1:
            # A fixed number applies under every strategy; it is not searched.
            weights[task] = float(values[0])
        elif not searched:
            weights[task] = 1.0
        elif isinstance(ws, WeightRange):
            weights[task] = pick.float(weight_param(task), ws.lo, ws.hi, log=True, step=None)
        else:
            weights[task] = float(pick.categorical(weight_param(task), values or []))
    return weights


def _weight_values(ws: WeightSpecValue) -> list[float] | None:
    """The possible values of a weight, or None for a continuous range."""
    if isinstance(ws, WeightRange):
        return [ws.lo] if ws.lo == ws.hi else None
    if isinstance(ws, WeightChoices):
        return list(dict.fromkeys(ws.choices))
    return [float(ws)]


def _pick_component(
    pick: _Picker, kind: str, choices: list[ComponentChoice]
) -> tuple[str, dict[str, Any]]:
    if len(choices) == 1:
        choice = choices[0]
    else:
        name = pick.categorical(kind, [c.name for c in choices])
        choice = next(c for c in choices if c.name == name)
    params: dict[str, Any] = {}
    for param, value in component_params(kind, choice).items():
        optuna_name = component_param(kind, choice.name, param)
        if isinstance(value, ParamRange):
            integer = _is_integer_param(kind, choice.name, param)
            params[param] = _pick_range(pick, optuna_name, value, integer)
        elif isinstance(value, ParamChoices):
            options = list(dict.fromkeys(value.choices))
            params[param] = (
                options[0] if len(options) == 1 else pick.categorical(optuna_name, options)
            )
        else:
            params[param] = value
    return choice.name, params


def _pick_range(pick: _Picker, name: str, spec: ParamRange, integer: bool) -> int | float:
    if spec.low == spec.high:
        return int(spec.low) if integer else spec.low
    if integer:
        step = int(spec.step) if spec.step is not None else 1
        return pick.int(name, int(spec.low), int(spec.high), log=spec.log, step=step)
    step_f = float(spec.step) if spec.step is not None else None
    return pick.float(name, float(spec.low), float(spec.high), log=spec.log, step=step_f)


def _pick_number(
    pick: _Picker, name: str, spec: ParamRange | ParamChoices | float | None, integer: bool
) -> Any:
    if spec is None:
        return None
    if isinstance(spec, ParamRange):
        return _pick_range(pick, name, spec, integer)
    if isinstance(spec, ParamChoices):
        options = list(dict.fromkeys(spec.choices))
        return options[0] if len(options) == 1 else pick.categorical(name, options)
    return spec


def _is_integer_param(kind: str, component: str, param: str) -> bool:
    return is_integer_field(component_config(kind, component), param)


def grid_search_space(spec: StudySpec, task_names: Sequence[str]) -> dict[str, list[Any]]:
    """The search space for `optuna.samplers.GridSampler`: every suggested parameter's values.

    Conditional parameters are part of the grid too (Optuna's grid is one product), so with
    several strategies that have parameters some configs repeat. Strategy, schedule and
    architecture parameter ranges need a ``step`` (or ``choices``) to be enumerable.

    Raises:
        SpecError: a continuous dimension (named), or more than `MAX_GRID_POINTS` points.
    """
    ref = reference_task(spec, task_names)
    space = spec.search_space
    weights: dict[str, tuple[str, WeightSpecValue]] = {}
    for task in task_names:
        if task == ref:
            continue
        if task in space.weights:
            weights[task] = (f"search_space.weights.{task}", space.weights[task])
        else:
            weights[task] = (f"search_space.default_weight (task {task!r})", space.default_weight)
    return grid_from_weights(spec, weights)


def grid_from_weights(
    spec: StudySpec, weights: Mapping[str, tuple[str, WeightSpecValue]]
) -> dict[str, list[Any]]:
    """`grid_search_space` over the given non-reference weights (task → (field path, spec))."""
    space = spec.search_space
    grid: dict[str, list[Any]] = {}

    def add(path: str, name: str, values: list[Any] | None) -> None:
        if values is None:
            raise SpecError(
                path,
                "the grid sampler needs every searched dimension discrete; give choices "
                "(or a fixed value, or a step for a range)",
            )
        if len(values) > 1:
            grid[name] = values

    def add_components(field: str, kind: str, choices: list[ComponentChoice] | None) -> None:
        if not choices:
            return
        add(f"search_space.{field}", kind, [c.name for c in choices])
        for i, choice in enumerate(choices):
            for param, value in component_params(kind, choice).items():
                given = param in choice.params
                path = f"search_space.{field}.{i}." + (
                    f"params.{param}" if given else f"default_ranges ({param})"
                )
                name = component_param(kind, choice.name, param)
                add(path, name, _spec_values(value, integer=False))

    add_components("strategies", "strategy", space.strategies)
    if space.weights_for_dynamic or any(c.name in STATIC_STRATEGIES for c in space.strategies):
        for task, (path, ws) in weights.items():
            add(path, weight_param(task), _weight_values(ws))
    add_components("schedules", "schedule", space.schedules)
    add_components("architectures", "architecture", space.architectures)
    for field, integer in (("lr", False), ("epochs", True), ("batch_size", True)):
        value = getattr(space, field)
        if value is not None:
            add(f"search_space.{field}", field, _spec_values(value, integer=integer))

    size = math.prod(len(values) for values in grid.values())
    if size > MAX_GRID_POINTS:
        raise SpecError(
            "search_space",
            f"the grid has {size:,} points, more than the {MAX_GRID_POINTS:,} allowed; "
            "give fewer choices or use another sampler",
        )
    return grid


def _spec_values(value: Any, integer: bool) -> list[Any] | None:
    if isinstance(value, ParamRange):
        return value.grid_values(integer)
    if isinstance(value, ParamChoices):
        return list(dict.fromkeys(value.choices))
    return [value]
