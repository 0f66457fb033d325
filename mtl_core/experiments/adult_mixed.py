"""UCI Adult with a mixed-scale task pair: income (BCE, AUC) and hours-per-week in raw units.

The second task regresses hours worked per week (MSE in hours², metric MAE in hours, lower is
better) next to the binary income task. The two losses differ by orders of magnitude (the MSE
of a fresh head is about 1,700 against a BCE near 0.7; after a few epochs still 150-200 against
0.3), so the loss weighting decides which task the shared trunk serves. That is the setting
where searching the weights can pay, unlike Adult's two AUC tasks, where every weighting lands
within noise. hours-per-week is not an input; marital-status is not one either (the encoder is
`adult`'s, which leaves it out for its never-married task).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import ClassVar

import numpy as np

from mtl_core.errors import DataError
from mtl_core.experiments._registry import register_experiment
from mtl_core.experiments.adult import COLUMNS, NUMERIC, Adult, Encoder, build_splits
from mtl_core.tasks import Task

logger = logging.getLogger(__name__)

REGRESSED = "hours-per-week"
_HOURS = COLUMNS.index(REGRESSED)
_INCOME = COLUMNS.index("income")
#: Encoder's columns are the numeric ones first, in NUMERIC order: this one is dropped.
_DROPPED_FEATURE = NUMERIC.index(REGRESSED)

_Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]  # inputs, income, hours


def _targets(rows: list[list[str]], path: Path) -> tuple[np.ndarray, np.ndarray]:
    income_values = [row[_INCOME].rstrip(".") for row in rows]
    unknown = set(income_values) - {">50K", "<=50K"}
    if unknown:
        raise DataError(f"{path} has income labels {sorted(unknown)}, expected '>50K' / '<=50K'")
    income = np.array([v == ">50K" for v in income_values], dtype=np.float32)
    try:
        hours = np.array([float(row[_HOURS]) for row in rows], dtype=np.float32)
    except ValueError as exc:
        raise DataError(f"{path}: hours-per-week holds a non-number: {exc}") from None
    return income, hours


def _inputs(encoder: Encoder, rows: list[list[str]]) -> np.ndarray:
    return np.delete(encoder.transform(rows), _DROPPED_FEATURE, axis=1)


def _encode(encoder: Encoder, rows: list[list[str]], path: Path) -> _Arrays:
    return (_inputs(encoder, rows), *_targets(rows, path))


@functools.lru_cache(maxsize=4)
def _build(root: str, val_fraction: float, seed: int) -> tuple[_Arrays, _Arrays, _Arrays]:
    # `adult`'s split: the same rows validate at the same seed.
    return build_splits(root, val_fraction, seed, _encode, "Adult (mixed scale)")


@register_experiment
class AdultMixed(Adult):
    """UCI Adult, tasks "income" (> 50K; BCE, AUC) and "hours" (hours-per-week; MSE, MAE).

    `Adult` with other targets and one input column less: the same files, encoder, split,
    network, training defaults and constructor.

    Inputs: `adult`'s encoding (numeric columns standardised with the training file's
    mean/std, categorical ones one-hot with its vocabulary) without hours-per-week, and with
    marital-status left out as in `adult` (the encoder is shared). Targets: income as float
    0/1 of shape ``[N]``; hours as float hours per week of shape ``[N]``, not standardised, so
    the MSE is in hours². Train / validation / test as in `adult` (same permutation at the same
    seed). The parsed arrays are cached per process: treat the returned tensors as read-only.

    Args:
        val_fraction: share of ``adult.data`` held out for validation (default 0.1).
        seed: seed of the train / validation permutation.
    """

    name: ClassVar[str] = "adult_mixed"
    description: ClassVar[str] = (
        "UCI Adult with mixed loss scales: income > 50K (BCE, AUC) and hours-per-week in raw "
        "units (MSE, MAE, lower is better; not an input); MLP trunk."
    )
    tasks: ClassVar[tuple[Task, ...]] = (
        Task("income", "bce_with_logits", "auc", 1, ("accuracy",)),
        Task("hours", "mse", "mae", 1, ("rmse",)),
    )

    nominal_input_width: ClassVar[int] = 100  # adult's, without hours-per-week

    def feature_names(self, data_dir: Path | str) -> list[str]:
        """The names of the input columns, in order (``age``, ``fnlwgt``, ...)."""
        names = super().feature_names(data_dir)
        del names[_DROPPED_FEATURE]
        return names

    def build_arrays(self, root: str) -> tuple[_Arrays, _Arrays, _Arrays]:
        return _build(root, self.val_fraction, self.seed)
