"""The ``confirmation`` part of a study spec: retraining the search's best at further seeds.

`mtlsearch.search.confirmation` plans the runs and reads them; this module is only what a user
writes in the spec.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from mtlsearch.search.spec_bounds import bounded_int
from mtlsearch.search.spec_values import _Model

#: Most configurations, and most seeds each, a confirmation retrains.
MAX_CONFIRMED = 20
MAX_CONFIRMATION_SEEDS = 20


class Confirmation(_Model):
    """What happens when the search budget is spent: its best configurations, and uniform
    weights, are retrained at further seeds before the study completes.

    The runs are counted apart from ``n_trials`` (they take no budget slot) and train as one
    batched pass where a worker's ``--batch`` allows it. ``GET /best`` then picks by the mean
    over these seeds and compares it with uniform weights (mtlsearch.search.confirmation).
    """

    enabled: bool = Field(
        default=True, description="Confirm the best at further seeds (default on)."
    )
    top: Annotated[int, bounded_int(1, MAX_CONFIRMED)] = Field(
        default=3,
        ge=1,
        le=MAX_CONFIRMED,
        description="How many distinct configurations to confirm: the best by validation "
        f"objective (multi-objective: members of the front). 1..{MAX_CONFIRMED}.",
    )
    seeds: Annotated[int, bounded_int(1, MAX_CONFIRMATION_SEEDS)] = Field(
        default=3,
        ge=1,
        le=MAX_CONFIRMATION_SEEDS,
        description=f"Further seeds per configuration, 1..{MAX_CONFIRMATION_SEEDS} (at least 2 "
        "for a spread).",
    )
    uniform: bool = Field(
        default=True,
        description="Also train uniform weights (strategy fixed, every weight 1, the best "
        "configuration's other settings) at the same seeds, the yardstick of the verdict.",
    )


__all__ = ["MAX_CONFIRMATION_SEEDS", "MAX_CONFIRMED", "Confirmation"]
