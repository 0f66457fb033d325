"""A study's population (PBT) as the worker's runner drives it: scores, explore, the generator.

The spec's ``population`` (`mtlsearch.search.spec_population.Population`) says how often and
how much; `PopulationPlan` adds what the study knows (its objective, its baselines, its weight
search space) and is handed to the runner with each member's job (picklable: it crosses into
a training process of its own). `mtl_core.batched.population.Population` does the copying.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from mtlsearch.search.objective import intermediate_value
from mtlsearch.search.spec import reference_task
from mtlsearch.search.spec_population import Population
from mtlsearch.search.spec_values import WeightChoices, WeightRange

if TYPE_CHECKING:
    from mtl_core.config import TrialConfig
    from mtl_core.experiments import Experiment
    from mtl_core.results import EpochReport
    from mtlsearch.search.spec import StudySpec


def _uniform(generator: torch.Generator) -> float:
    return float(torch.rand(1, generator=generator, dtype=torch.float64))


def _index(n: int, generator: torch.Generator) -> int:
    return int(torch.randint(n, (1,), generator=generator))


@dataclass(frozen=True)
class PopulationPlan:
    """One study's population settings with its objective and weight space.

    Args:
        spec: the study's spec (its ``population`` is set).
        baselines: the single-task baselines of a ``delta_m`` objective.
    """

    spec: StudySpec
    baselines: Mapping[str, float] | None = None

    @property
    def settings(self) -> Population:
        assert self.spec.population is not None  # a plan exists only for such studies
        return self.spec.population

    def score(self, report: EpochReport, experiment: Experiment) -> float:
        """The study's objective on the epoch's validation metrics (higher is better)."""
        value = intermediate_value(report, self.spec, experiment, self.baselines)
        return value if value is not None and math.isfinite(value) else -math.inf

    def due(self, epoch: int, epochs: int) -> bool:
        """Whether members that have run ``epoch`` of ``epochs`` epochs exploit and explore."""
        return epoch < epochs and epoch % self.settings.interval_epochs == 0

    def generator(self, numbers: Sequence[int]) -> torch.Generator:
        """The population's generator: the study's seed and its members' trial numbers, so a
        rerun of the study with the same seed draws the same."""
        seed = (self.spec.seed or 0) * 1_000_003 + min(numbers, default=0)
        return torch.Generator().manual_seed(seed)

    def explored(self, task: str, config: TrialConfig, experiment: Experiment) -> bool:
        """Whether the population moves ``task``'s weight: a weight the study searches for the
        trial's strategy (not the reference task's, not a fixed number)."""
        space = self.spec.search_space
        if task == reference_task(self.spec, list(experiment.task_names)):
            return False
        if config.strategy != "fixed" and not space.weights_for_dynamic:
            return False
        ws = space.weights.get(task, space.default_weight)
        if isinstance(ws, WeightRange):
            return ws.lo < ws.hi
        return isinstance(ws, WeightChoices) and len(set(ws.choices)) > 1

    def explore(
        self,
        weights: dict[str, float],
        config: TrialConfig,
        experiment: Experiment,
        generator: torch.Generator,
    ) -> dict[str, float]:
        """New weights for a member that copied ``weights``: each explored weight resampled
        from its range (probability ``resample_probability``) or multiplied by one of the
        ``perturb`` factors and kept within its range (choices: the neighbouring choice)."""
        settings = self.settings
        space = self.spec.search_space
        out = dict(weights)
        for task in experiment.task_names:
            if not self.explored(task, config, experiment):
                continue
            ws = space.weights.get(task, space.default_weight)
            resample = _uniform(generator) < settings.resample_probability
            factor = settings.perturb[_index(len(settings.perturb), generator)]
            if isinstance(ws, WeightRange):
                if resample:
                    low, high = math.log(ws.lo), math.log(ws.hi)
                    out[task] = math.exp(low + (high - low) * _uniform(generator))
                else:
                    out[task] = min(max(weights[task] * factor, ws.lo), ws.hi)
                continue
            assert isinstance(ws, WeightChoices)
            choices = sorted(set(ws.choices))
            if resample:
                out[task] = choices[_index(len(choices), generator)]
                continue
            # The choice nearest the current weight, then one step in the factor's direction.
            here = min(range(len(choices)), key=lambda i: abs(choices[i] - weights[task]))
            step = 1 if factor > 1 else -1 if factor < 1 else 0
            out[task] = choices[min(max(here + step, 0), len(choices) - 1)]
        return out


__all__ = ["PopulationPlan"]
