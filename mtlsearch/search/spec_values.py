"""The values a study spec is made of: task weights (a log range, choices, or fixed) and
component choices whose parameters are each a range, choices, or fixed.

Each union is a pydantic discriminated union, so a bad value's error names the one form it
was read as. `mtlsearch.search.spec` builds `StudySpec` from them.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from mtlsearch.search.spec_bounds import (
    MAX_CHOICES,
    MAX_GRID_POINTS,
    FiniteFloat,
    FiniteJson,
    Number,
    Scalar,
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WeightRange(_Model):
    """A task's weight relative to the reference task, searched on a log scale in [lo, hi].

    ``lo == hi`` fixes the weight. The study suggests ``w_<task>`` log-uniformly, which is the
    same as u = ln w uniform in [ln lo, ln hi].
    """

    lo: FiniteFloat = Field(gt=0, description="Smallest weight (> 0).")
    hi: FiniteFloat = Field(gt=0, description="Largest weight (>= lo).")

    @model_validator(mode="after")
    def _ordered(self) -> WeightRange:
        if self.hi < self.lo:
            raise ValueError(f"hi must be >= lo, got lo={self.lo}, hi={self.hi}")
        return self


class WeightChoices(_Model):
    """A task's weight picked among explicit values (relative to the reference task)."""

    choices: list[Annotated[FiniteFloat, Field(ge=0)]] = Field(
        min_length=1,
        max_length=MAX_CHOICES,
        description=f"The weights to choose among (each >= 0; at most {MAX_CHOICES}).",
    )


def _weight_kind(value: Any) -> str:
    if isinstance(value, WeightRange):
        return "range"
    if isinstance(value, WeightChoices):
        return "choices"
    if isinstance(value, dict):
        return "choices" if "choices" in value else "range"
    return "fixed"


WeightSpec = Annotated[
    Annotated[WeightRange, Tag("range")]
    | Annotated[WeightChoices, Tag("choices")]
    | Annotated[FiniteFloat, Field(ge=0), Tag("fixed")],
    Discriminator(_weight_kind),
]


class ParamRange(_Model):
    """A numeric hyper-parameter searched in [low, high].

    Integer parameters (by their config's type) are suggested as integers. The grid sampler
    needs a ``step`` (or use ``choices``).
    """

    low: Number = Field(description="Lower bound (inclusive).")
    high: Number = Field(description="Upper bound (inclusive, >= low).")
    log: bool = Field(default=False, description="Search on a log scale (needs low > 0, no step).")
    step: Number | None = Field(default=None, gt=0, description="Discretisation step (optional).")

    @model_validator(mode="after")
    def _consistent(self) -> ParamRange:
        if self.high < self.low:
            raise ValueError(f"high must be >= low, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale range needs low > 0, got low={self.low}")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        return self

    def grid_values(self, integer: bool) -> list[int | float] | None:
        """The discrete values of the range, or None where it is continuous."""
        step = self.step if self.step is not None else (1 if integer else None)
        if step is None:
            return None
        # (high - low) / step overflows to inf for a tiny step: compare before flooring.
        ratio = (self.high - self.low) / step
        if not math.isfinite(ratio) or ratio > MAX_GRID_POINTS:
            return [self.low] * (MAX_GRID_POINTS + 1)  # only its size matters: too large
        count = math.floor(ratio + 1e-9) + 1
        values = [self.low + k * step for k in range(count)]
        if integer or all(isinstance(x, int) for x in (self.low, step)):
            return [round(v) for v in values]
        return [round(v, 12) for v in values]


class ParamChoices(_Model):
    """A hyper-parameter picked among explicit values."""

    choices: list[Scalar] = Field(
        min_length=1,
        max_length=MAX_CHOICES,
        description=f"The values to choose among (at most {MAX_CHOICES}).",
    )


def _param_kind(value: Any) -> str:
    if isinstance(value, ParamRange):
        return "range"
    if isinstance(value, ParamChoices):
        return "choices"
    if isinstance(value, dict):
        if "low" in value or "high" in value:
            return "range"
        if set(value) == {"choices"}:
            return "choices"
    return "fixed"


ParamSpec = Annotated[
    Annotated[ParamRange, Tag("range")]
    | Annotated[ParamChoices, Tag("choices")]
    | Annotated[FiniteJson, Tag("fixed")],
    Discriminator(_param_kind),
]

NumberSpec = Annotated[
    Annotated[ParamRange, Tag("range")]
    | Annotated[ParamChoices, Tag("choices")]
    | Annotated[Number, Tag("fixed")],
    Discriminator(_param_kind),
]


class ComponentChoice(_Model):
    """One strategy (schedule, architecture) the study may pick, with its parameters.

    Each parameter is a fixed value, a `ParamRange` or `ParamChoices`; the searched ones are
    suggested only in trials that pick this component (Optuna name ``<name>.<param>`` for
    strategies, ``schedule.<name>.<param>`` and ``architecture.<name>.<param>`` otherwise).
    Parameters not given take the component config's defaults, or, with ``default_ranges``,
    are searched over the ranges their config declares (`mtlsearch.search.components`).
    """

    name: str = Field(min_length=1, description="A registered name, e.g. 'fixed' or 'dwa'.")
    params: dict[str, ParamSpec] = Field(
        default_factory=dict,
        description="Parameter → fixed value, {low, high, log, step} or {choices: [...]}.",
    )
    default_ranges: bool = Field(
        default=False,
        description="Also search every parameter not given over its default range from the "
        "method's paper (docs/strategies.md, the 'searched' column); the others keep their "
        "defaults.",
    )


StrategyChoice = ComponentChoice


__all__ = [
    "ComponentChoice",
    "NumberSpec",
    "ParamChoices",
    "ParamRange",
    "ParamSpec",
    "StrategyChoice",
    "WeightChoices",
    "WeightRange",
    "WeightSpec",
]
