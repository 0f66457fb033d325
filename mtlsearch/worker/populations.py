"""The runner's populations: a study's trials trained as one population (PBT) in one run.

A study whose spec has ``population`` gives each of its jobs a `PopulationPlan`. The runner
starts a run with jobs of one population only (`same_population`), never refills it (the
members start and end together), and after each epoch hands the slots' reports to
`RunPopulation.after_epoch`, which exploits and explores where the plan says it is due
(`mtl_core.batched.population.Population`). Jobs of other studies wait for a run of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mtl_core.batched.population import Population

if TYPE_CHECKING:
    import mtl_core.batched as batched
    from mtlsearch.search.population import PopulationPlan
    from mtlsearch.worker.jobs import TrainingJob

logger = logging.getLogger(__name__)


def same_population(first: TrainingJob, job: TrainingJob) -> bool:
    """Whether ``job`` may train in a run that ``first`` started: neither is a population
    member, or both are members of one study's population."""
    if first.population is None and job.population is None:
        return True
    return (
        first.population is not None
        and job.population is not None
        and first.study.id == job.study.id
    )


class RunPopulation:
    """The population of one run: its members are every slot the run started with."""

    def __init__(self, run: batched.BatchedRun, plan: PopulationPlan) -> None:
        members = run.occupied()
        numbers = [slot.tag.number for slot in run.slots if slot is not None]
        self.run = run
        self.plan = plan
        self.population = Population(
            run,
            members,
            plan.settings.quantile,
            plan.generator([n for n in numbers if n is not None]),
            label=lambda tag: tag.number,
        )

    def after_epoch(self, reports: Sequence[batched.SlotReport]) -> None:
        """Exploit and explore if the members' epoch is due (`PopulationPlan.due`)."""
        live = self.population.live()
        if not live:
            return
        first = self.run.slots[live[0]]
        assert first is not None
        if not self.plan.due(first.epoch, first.config.epochs):
            return
        experiment = self.run.experiment
        scores = {
            item.slot: self.plan.score(item.report, experiment)
            for item in reports
            if item.slot in live
        }
        config = first.config

        def explore(weights: dict[str, float], generator: object) -> dict[str, float]:
            return self.plan.explore(weights, config, experiment, generator)  # type: ignore[arg-type]

        pairs = self.population.step(scores, explore)
        for source, target in pairs:
            source_slot, target_slot = self.run.slots[source], self.run.slots[target]
            assert source_slot is not None and target_slot is not None
            logger.info(
                "population of study %s after epoch %d: %s copies %s",
                source_slot.tag.study.id,
                first.epoch,
                target_slot.tag.label,
                source_slot.tag.label,
            )


def start_population(run: batched.BatchedRun) -> RunPopulation | None:
    """The run's population, if its jobs are members of one (else None)."""
    tags = [slot.tag for slot in run.slots if slot is not None]
    plans = [tag.population for tag in tags]
    if not tags or plans[0] is None:
        return None
    return RunPopulation(run, plans[0])


__all__ = ["RunPopulation", "same_population", "start_population"]
