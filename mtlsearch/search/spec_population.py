"""The ``population`` part of a study spec: population-based training of the loss weights.

`mtlsearch.search.population` turns it into what the worker's runner does between epochs;
this module is only what a user writes in the spec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field, field_validator

from mtlsearch.search.spec_bounds import FiniteFloat, bounded_int
from mtlsearch.search.spec_values import _Model

if TYPE_CHECKING:
    from mtlsearch.search.spec import StudySpec

#: Most epochs between two exploit/explore steps.
MAX_INTERVAL_EPOCHS = 1000


class Population(_Model):
    """Train the trials of one batched pass as a population (PBT) over their fixed weights.

    Jaderberg et al. (2017), as Ray Tune's ``PopulationBasedTraining``: a worker fills the K
    slots of one pass (``--batch K``) with one population whose initial weights come from the
    study's sampler; after every ``interval_epochs`` epochs the bottom ``quantile`` of the
    members by the study's objective on validation copy a top member's model, optimizer and
    strategy state and then perturb (×0.8 or ×1.2 by default) or, with
    ``resample_probability``, resample each searched weight within the search space. Each
    member is a trial whose weight trajectory and lineage are stored with it.
    """

    interval_epochs: Annotated[int, bounded_int(1, MAX_INTERVAL_EPOCHS)] = Field(
        default=2,
        ge=1,
        le=MAX_INTERVAL_EPOCHS,
        description="Epochs between two exploit/explore steps (1..1000).",
    )
    quantile: FiniteFloat = Field(
        default=0.25,
        gt=0,
        le=0.5,
        description="Share of the population replaced at each step, and copied from: "
        "ceil(quantile × members), at most half of them (0 < quantile <= 0.5).",
    )
    resample_probability: FiniteFloat = Field(
        default=0.25,
        ge=0,
        le=1,
        description="Chance that a copied member's weight is drawn afresh from the search "
        "space instead of perturbed.",
    )
    perturb: list[Annotated[FiniteFloat, Field(gt=0)]] = Field(
        default_factory=lambda: [0.8, 1.2],
        min_length=1,
        max_length=8,
        description="Factors a perturbed weight is multiplied by (one drawn per weight), then "
        "kept within its range; for weight choices, > 1 moves to the next larger choice.",
    )

    @field_validator("perturb")
    @classmethod
    def _not_all_one(cls, factors: list[float]) -> list[float]:
        if all(f == 1.0 for f in factors):
            raise ValueError("perturb factors are all 1: explore would change nothing")
        return factors


def check_population(spec: StudySpec) -> None:
    """What a study with a ``population`` must also be (raised as ``"<field>: <why>"``, the
    form the spec's validators raise, so the 422 names the field)."""
    if spec.objective.kind == "multi":
        raise ValueError(
            "population: a population is ranked by one objective value; multi-objective "
            "studies cannot use one (use delta_m or weighted_mean)"
        )
    if spec.pruner != "none":
        raise ValueError(
            "pruner: a population's members train to the end (the worst copy the best), got "
            f"{spec.pruner!r}; use 'none'"
        )
    if spec.confirmation.enabled:
        raise ValueError(
            "confirmation.enabled: confirmation retrains configurations with fixed weights, "
            "and a population member's answer is its weight trajectory, which it does not "
            "replay; set it to false"
        )
    strategies = spec.search_space.strategies
    if len(strategies) != 1:
        raise ValueError(
            "search_space.strategies: a population's members copy each other's strategy "
            f"state: give one strategy, got {len(strategies)}"
        )


__all__ = ["MAX_INTERVAL_EPOCHS", "Population", "check_population"]
