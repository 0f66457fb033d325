"""The study specification: what a study searches, how trials are judged and how they are drawn.

`StudySpec` is the contract of ``POST /api/v1/studies``, of ``mtlsearch run --spec FILE`` and of
what workers read back from the database. `StudySpec` validates everything that needs no
experiment (a bad range, an unknown sampler, a grid that is too large); the error text names
the field path, so FastAPI answers 422 with it. `mtlsearch.search.spec_checks` checks the rest
(task, strategy, schedule and architecture names and parameters) and raises `SpecError`.

The weights follow DESIGN.md's T-1 log-ratio form: one reference task has weight 1, every other
task t has w_t = exp(u_t) with u_t uniform in [ln lo, ln hi] (Adam is nearly scale-invariant,
so only ratios matter).
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    model_validator,
)

from mtlsearch.search.spec_bounds import (
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_GRID_POINTS,
    MAX_N_TRIALS,
    MAX_SEED,
    MAX_TIME_BUDGET_S,
    MAX_TRAIN_SAMPLES,
    FiniteFloat,
    bounded_int,
)
from mtlsearch.search.spec_confirmation import (
    MAX_CONFIRMATION_SEEDS,
    MAX_CONFIRMED,
    Confirmation,
)
from mtlsearch.search.spec_population import Population, check_population
from mtlsearch.search.spec_values import (
    ComponentChoice,
    NumberSpec,
    ParamChoices,
    ParamRange,
    ParamSpec,
    StrategyChoice,
    WeightChoices,
    WeightRange,
    WeightSpec,
    _Model,
)

if TYPE_CHECKING:
    pass

SamplerName = Literal["tpe", "tpe_batch", "gp", "random", "grid", "nsga2"]
PrunerName = Literal["median", "hyperband", "none"]
ObjectiveKind = Literal["delta_m", "weighted_mean", "multi"]
OptimizerName = Literal["adam", "adamw", "sgd"]

#: Samplers that handle several objectives (a Pareto front). In Optuna 5 every sampler offered
#: here does: TPE (MOTPE), NSGA-II, random, grid, and GPSampler (log-EHVI).
MULTI_OBJECTIVE_SAMPLERS: frozenset[str] = frozenset(
    {"tpe", "tpe_batch", "gp", "random", "grid", "nsga2"}
)
#: The weight range of tasks the spec does not mention.
DEFAULT_WEIGHT_RANGE = (0.1, 10.0)
#: Strategies whose loss weights are the searched static weights; dynamic strategies (all
#: others) set their own weights and, by default, train with static weights 1.
STATIC_STRATEGIES: frozenset[str] = frozenset({"fixed"})


class SpecError(ValueError):
    """A study spec that does not fit its experiment (or the registries).

    Args:
        field: dotted path of the offending field, e.g. ``search_space.weights.depth``.
        message: one line saying what is wrong and what is allowed.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def _default_strategies() -> list[ComponentChoice]:
    return [ComponentChoice(name="fixed")]


class SearchSpace(_Model):
    """What a study searches: task weights, strategies, and optional training settings."""

    weights: dict[str, WeightSpec] = Field(
        default_factory=dict,
        description="Task → {lo, hi} (log-uniform, relative to the reference task), "
        "{choices: [...]} or a fixed number. Tasks not named use `default_weight`.",
    )
    reference_task: str | None = Field(
        default=None,
        description="The task whose weight is 1 (only the T-1 ratios are searched). Default: "
        "the experiment's first task.",
    )
    default_weight: WeightSpec = Field(
        default_factory=lambda: WeightRange(lo=DEFAULT_WEIGHT_RANGE[0], hi=DEFAULT_WEIGHT_RANGE[1]),
        description="The weight of tasks not named in `weights`: by default a log-uniform "
        "range [0.1, 10] relative to the reference task.",
    )
    weights_for_dynamic: bool = Field(
        default=False,
        description="Also search the static weights in trials with a dynamic strategy (they "
        "scale each task's loss before the strategy weighs it). Off: dynamic strategies train "
        "with searched weights at 1, as in their papers; fixed numbers always apply.",
    )
    strategies: list[ComponentChoice] = Field(
        default_factory=_default_strategies,
        min_length=1,
        description="Weighting strategies to choose among (categorical `strategy`), each with "
        "its own conditional parameters. Default: only 'fixed' (search the weights).",
    )
    schedules: list[ComponentChoice] | None = Field(
        default=None,
        min_length=1,
        description="Training schedules to choose among (default: joint).",
    )
    architectures: list[ComponentChoice] | None = Field(
        default=None,
        min_length=1,
        description="Architectures to choose among (default: the experiment's).",
    )
    lr: NumberSpec | None = Field(
        default=None, description="Learning rate: fixed, range or choices."
    )
    epochs: NumberSpec | None = Field(
        default=None, description="Epochs: fixed, integer range or choices."
    )
    batch_size: NumberSpec | None = Field(default=None, description="Batch size: fixed or choices.")
    optimizer: OptimizerName | None = Field(
        default=None, description="Optimizer (default: experiment's)."
    )
    weight_decay: FiniteFloat | None = Field(
        default=None, ge=0, description="Weight decay of every trial."
    )
    grad_clip: FiniteFloat | None = Field(
        default=None, gt=0, description="Gradient-norm clip of every trial."
    )
    max_train_samples: Annotated[int, bounded_int(1, MAX_TRAIN_SAMPLES)] | None = Field(
        default=None,
        ge=1,
        le=MAX_TRAIN_SAMPLES,
        description="Train every trial on the first N training samples (quick runs).",
    )


class Objective(_Model):
    """How a finished trial is scored (on the validation split).

    * ``delta_m``: Δm% against single-task baselines (LibMTL convention), maximised.
    * ``weighted_mean``: Σ_t c_t s_t M_t / Σ_t c_t with s_t = -1 for lower-is-better metrics,
      maximised.
    * ``multi``: one value per task, each in its metric's direction: a Pareto front.
    """

    kind: ObjectiveKind = Field(default="delta_m", description="delta_m, weighted_mean or multi.")
    coefficients: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None = Field(
        default=None,
        description="weighted_mean only: task → coefficient (>= 0); when given it names every "
        "task. Default: 1 for every task.",
    )
    baselines: dict[str, Annotated[float, Field(allow_inf_nan=False)]] | None = Field(
        default=None,
        description="delta_m only: each task's single-task validation metric. Default: trained "
        "once before the first trial (each task alone, fixed strategy, same settings).",
    )


class StudySpec(_Model):
    """A study: the experiment, the search space, the objective, the sampler and the budget."""

    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Study name: 1-64 characters among letters, digits, '_', '.', '-'.",
    )
    experiment: str = Field(min_length=1, description="A registered experiment, e.g. 'adult'.")
    search_space: SearchSpace = Field(default_factory=SearchSpace, description="What to search.")
    objective: Objective = Field(default_factory=Objective, description="How trials are scored.")
    sampler: SamplerName = Field(
        default="tpe_batch",
        description="tpe_batch (default: TPE fitted once per batch of asks), tpe (refitted at "
        "every ask), gp, random, grid or nsga2.",
    )
    pruner: PrunerName = Field(
        default="median",
        description="median (default), hyperband or none. Multi-objective studies never prune.",
    )
    n_trials: Annotated[int, bounded_int(1, MAX_N_TRIALS)] | None = Field(
        default=None,
        ge=1,
        le=MAX_N_TRIALS,
        description=f"Number of trials of the study (1..{MAX_N_TRIALS}).",
    )
    time_budget_s: float | None = Field(
        default=None,
        gt=0,
        le=MAX_TIME_BUDGET_S,
        allow_inf_nan=False,
        description="Stop starting trials after this many seconds (at most a year).",
    )
    seed: Annotated[int, bounded_int(0, MAX_SEED)] | None = Field(
        default=None,
        ge=0,
        le=MAX_SEED,
        description=f"Seeds the sampler and every trial's training (0..{MAX_SEED}; default 0 "
        "for training).",
    )
    confirmation: Confirmation = Field(
        default_factory=Confirmation,
        description="Retrain the best configurations and uniform weights at further seeds "
        "once the budget is spent; /best then reports means, spreads and a verdict.",
    )
    population: Population | None = Field(
        default=None,
        description="Train each worker's batched pass as a population (PBT) over the fixed "
        "weights: every interval_epochs the bottom quantile copy a top member and perturb or "
        "resample their weights. Needs a single objective; members are not pruned.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_pruning_for_multi(cls, data: Any) -> Any:
        # A multi-objective study cannot prune (Optuna does not), nor are a population's
        # members pruned (they train to the end, copying each other), so the default pruner
        # is "none" there; an explicit other pruner is reported by `_check`.
        if isinstance(data, dict) and "pruner" not in data:
            objective = data.get("objective")
            kind = objective.get("kind") if isinstance(objective, dict) else None
            if isinstance(objective, Objective):
                kind = objective.kind
            if kind == "multi" or data.get("population") is not None:
                data = {**data, "pruner": "none"}
        # Confirmation retrains fixed configurations; a population's answer is a trajectory.
        if isinstance(data, dict) and data.get("population") is not None:
            data = {"confirmation": {"enabled": False}, **data}
        return data

    @model_validator(mode="after")
    def _check(self) -> StudySpec:
        if self.n_trials is None and self.time_budget_s is None:
            raise _error("n_trials", "give n_trials, time_budget_s or both")
        if self.objective.kind == "multi":
            if self.sampler not in MULTI_OBJECTIVE_SAMPLERS:
                valid = ", ".join(sorted(MULTI_OBJECTIVE_SAMPLERS))
                raise _error(
                    "sampler",
                    f"{self.sampler!r} cannot optimise several objectives; use one of {valid}",
                )
            if self.pruner != "none":
                raise _error(
                    "pruner",
                    f"multi-objective studies cannot prune (Optuna does not), got "
                    f"{self.pruner!r}; use 'none'",
                )
        if self.population is not None:
            check_population(self)
        _check_objective(self.objective)
        _check_space(self.search_space)
        if self.sampler == "grid":
            # Only the tasks the spec names are known here; `validate_against_experiment`
            # checks the grid again over all the experiment's tasks.
            from mtlsearch.search.space import grid_from_weights

            ref = self.search_space.reference_task
            named = {
                task: (f"search_space.weights.{task}", ws)
                for task, ws in self.search_space.weights.items()
                if task != ref
            }
            try:
                grid_from_weights(self, named)
            except SpecError as exc:
                raise ValueError(str(exc)) from None
        return self


def _error(field: str, message: str) -> ValueError:
    # Raised inside validators: pydantic wraps a ValueError, and the path leads the text.
    return ValueError(f"{field}: {message}")


def _check_objective(objective: Objective) -> None:
    if objective.coefficients is not None:
        if objective.kind != "weighted_mean":
            raise _error(
                "objective.coefficients", f"only for kind weighted_mean, not {objective.kind!r}"
            )
        if objective.coefficients and sum(objective.coefficients.values()) <= 0:
            raise _error("objective.coefficients", "at least one coefficient must be > 0")
    if objective.baselines is not None:
        if objective.kind != "delta_m":
            raise _error("objective.baselines", f"only for kind delta_m, not {objective.kind!r}")
        for task, value in objective.baselines.items():
            if value == 0:
                raise _error(
                    f"objective.baselines.{task}", "a baseline must be non-zero (Δm% divides by it)"
                )


def _check_space(space: SearchSpace) -> None:
    ref = space.reference_task
    if ref is not None and ref in space.weights and not is_weight_one(space.weights[ref]):
        raise _error(
            f"search_space.weights.{ref}",
            "the reference task's weight is 1 by definition; remove it or set it to 1",
        )
    for field in ("strategies", "schedules", "architectures"):
        choices: list[ComponentChoice] | None = getattr(space, field)
        names = [c.name for c in choices or []]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise _error(f"search_space.{field}.{i}.name", f"{name!r} is listed twice")
    _check_number(space.lr, "search_space.lr", integer=False)
    _check_number(space.epochs, "search_space.epochs", integer=True, most=MAX_EPOCHS)
    _check_number(space.batch_size, "search_space.batch_size", integer=True, most=MAX_BATCH_SIZE)


def _check_number(
    spec: ParamRange | ParamChoices | float | None,
    path: str,
    integer: bool,
    most: float | None = None,
) -> None:
    if spec is None:
        return
    if isinstance(spec, ParamRange):
        values: list[Any] = [spec.low, spec.high]
        if integer and spec.step is not None and not isinstance(spec.step, int):
            raise _error(f"{path}.step", f"must be an integer, got {spec.step}")
    elif isinstance(spec, ParamChoices):
        values = list(spec.choices)
    else:
        values = [spec]
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _error(path, f"must be a number, got {value!r}")
        if integer and not isinstance(value, int):
            raise _error(path, f"must be an integer, got {value!r}")
        if value <= 0:
            raise _error(path, f"must be > 0, got {value!r}")
        if most is not None and value > most:
            raise _error(path, f"must be between 1 and {most}, got {value!r}")


def is_weight_one(weight: WeightRange | WeightChoices | float) -> bool:
    """Whether a weight spec can only be 1 (what the reference task's entry must be)."""
    if isinstance(weight, WeightRange):
        return weight.lo == weight.hi == 1.0
    if isinstance(weight, WeightChoices):
        return set(weight.choices) == {1.0}
    return float(weight) == 1.0


def describe_validation_error(exc: ValidationError) -> str:
    """One line for the first error of a spec: ``field.path: message``."""
    err = exc.errors()[0]
    path = ".".join(str(p) for p in err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    # `StudySpec._check` raises at the root with the path leading its message already.
    return f"{path}: {message}" if path else message


def reference_task(spec: StudySpec, task_names: Sequence[str]) -> str:
    """The reference task (weight 1): the spec's, else the experiment's first task."""
    return spec.search_space.reference_task or task_names[0]


def is_integer_field(config_cls: type[BaseModel], param: str) -> bool:
    """Whether a config field holds an integer (so a range over it is suggested as integers)."""
    import types

    field = config_cls.model_fields.get(param)
    if field is None:
        return False
    annotation = field.annotation
    if annotation is int:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return int in args and float not in args
    return False


__all__ = [
    "DEFAULT_WEIGHT_RANGE",
    "MAX_CONFIRMATION_SEEDS",
    "MAX_CONFIRMED",
    "MAX_GRID_POINTS",
    "MULTI_OBJECTIVE_SAMPLERS",
    "STATIC_STRATEGIES",
    "ComponentChoice",
    "Confirmation",
    "NumberSpec",
    "Objective",
    "ParamChoices",
    "ParamRange",
    "ParamSpec",
    "SearchSpace",
    "SpecError",
    "StrategyChoice",
    "StudySpec",
    "WeightChoices",
    "WeightRange",
    "WeightSpec",
    "describe_validation_error",
    "is_integer_field",
    "is_weight_one",
    "reference_task",
]
