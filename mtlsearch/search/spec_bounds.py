"""The limits of a study spec: no accepted value may cost unbounded memory or time.

A spec comes from a REST request as much as from a trusted file, so every number it holds is
bounded here: the budget (``n_trials`` fits the database's 32-bit integer columns, ``seed`` is
what NumPy and Optuna accept), the training settings a worker runs (epochs, batch size, sample
count) and the size of what is stored per trial (choice lists). Components bound their own
integer parameters (``le=`` on their configs); `validate_against_experiment` checks range ends
and choices against those configs. docs/study-spec.md lists these limits.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, JsonValue

#: The largest ``n_trials``: the trial counters are 32-bit integer columns.
MAX_N_TRIALS = 2**31 - 1
#: The largest ``seed``: NumPy's and Optuna's samplers take a 32-bit unsigned seed.
MAX_SEED = 2**32 - 1
#: The longest ``time_budget_s``: one year.
MAX_TIME_BUDGET_S = 366 * 24 * 3600.0
#: The most epochs one trial may train.
MAX_EPOCHS = 10_000
#: The largest batch size.
MAX_BATCH_SIZE = 65_536
#: The most training samples ``max_train_samples`` may name.
MAX_TRAIN_SAMPLES = 2**31 - 1
#: The most values of one ``{choices: [...]}``: Optuna stores them with every trial.
MAX_CHOICES = 1_000
#: The largest grid the grid sampler may enumerate.
MAX_GRID_POINTS = 10_000
#: The longest string a choice or a fixed parameter may hold.
MAX_STRING_LENGTH = 1_000
#: The deepest nesting and the most items of a fixed (JSON) parameter value.
MAX_JSON_DEPTH = 8
MAX_JSON_ITEMS = 1_000
#: The largest magnitude of any number in a spec (finite, and far from float overflow).
MAX_ABS_NUMBER = 1e15


def _check_finite_json(value: JsonValue) -> JsonValue:
    """Refuse NaN, Infinity, huge numbers and oversized structures in a JSON value."""
    items = 0

    def walk(node: JsonValue, depth: int) -> None:
        nonlocal items
        items += 1
        if items > MAX_JSON_ITEMS:
            raise ValueError(f"a fixed value may hold at most {MAX_JSON_ITEMS} items")
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"a fixed value may nest at most {MAX_JSON_DEPTH} levels deep")
        if isinstance(node, bool) or node is None:
            return
        if isinstance(node, int | float):
            _check_number(node)
        elif isinstance(node, str):
            if len(node) > MAX_STRING_LENGTH:
                raise ValueError(f"a string may hold at most {MAX_STRING_LENGTH} characters")
        elif isinstance(node, list):
            for item in node:
                walk(item, depth + 1)
        elif isinstance(node, dict):
            for item in node.values():
                walk(item, depth + 1)

    walk(value, 0)
    return value


def _check_scalar(value: bool | float | str) -> bool | float | str:
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            raise ValueError(f"a string may hold at most {MAX_STRING_LENGTH} characters")
        return value
    return value if isinstance(value, bool) else _check_number(value)


def bounded_int(low: int, high: int) -> BeforeValidator:
    """Refuse a number outside [low, high] with one message naming the range.

    Checked before parsing, so that 1e19 says the range rather than that it does not parse.
    """

    def check(value: object) -> object:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and not (low <= value <= high):  # type: ignore[operator]
            raise ValueError(f"must be an integer between {low} and {high}, got {value!r}")
        return value

    return BeforeValidator(check)


def _check_number(value: float) -> float:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {value}")
    if abs(value) > MAX_ABS_NUMBER:
        raise ValueError(f"must be between -{MAX_ABS_NUMBER:g} and {MAX_ABS_NUMBER:g}, got {value}")
    return value


#: A finite float (no NaN or Infinity) of bounded magnitude.
FiniteFloat = Annotated[float, Field(allow_inf_nan=False), AfterValidator(_check_number)]
#: A number of bounded magnitude, kept as an int when given as one.
Number = Annotated[int | float, AfterValidator(_check_number)]
#: A choice value: a bounded number, a short string or a bool.
Scalar = Annotated[bool | int | float | str, AfterValidator(_check_scalar)]
#: A fixed parameter value: any JSON, with every number finite and the whole bounded in size.
FiniteJson = Annotated[JsonValue, AfterValidator(_check_finite_json)]
