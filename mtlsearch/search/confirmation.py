"""Confirming a finished search: its best configurations and uniform weights at further seeds.

The trial a search reports as best is the luckiest of many draws: on a model whose weights
matter little it is often a repeat at another seed, inside the seed noise. So when the search
budget is spent (`storage.TrialRepository.complete_if_done`), the study is not yet complete:

* `plan` picks the ``confirmation.top`` distinct configurations (by the mean validation
  objective of their search trials; multi-objective studies: members of the Pareto front of
  those means), and uniform weights (strategy ``fixed``, every weight 1, the best
  configuration's other settings), and queues each at ``confirmation.seeds`` further seeds,
  seeds no search trial used (`confirmation_seeds`). They train like any trial, K at a time.
* `summarise` reads the finished runs: per configuration, per task and for the objective,
  mean ± sd over the confirmation seeds only (the search trial that chose a configuration is
  left out: it was picked for being high); the best is the highest mean; the `Verdict` says in
  words whether it beats uniform weights by more than the seed noise.

The difference of two means counts as more than the noise when it exceeds twice its standard
error, √(sd_a²/n_a + sd_b²/n_b) (about a 95 % two-sided level for normal noise).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from mtlsearch.search.best import pareto_indices
from mtlsearch.search.objective import directions
from mtlsearch.search.spec import StudySpec
from storage.repositories.trials import QueuedRun

if TYPE_CHECKING:
    from mtl_core.experiments import Experiment
    from storage import TrialRow

#: Confirmation seeds start here above the spec's base seed: search trials train at the base
#: seed, or base + their trial number (repeats: fewer than 2**31 trials), never up here.
CONFIRMATION_SEED_OFFSET = 2**31
#: What a uniform-weights run confirms (a search configuration is named by its params key).
UNIFORM = "uniform"
#: How many standard errors a difference must exceed to count as more than the seed noise.
NOISE_FACTOR = 2.0


def confirmation_seeds(spec: StudySpec) -> list[int]:
    """The seeds every confirmed configuration trains at."""
    base = spec.seed or 0
    return [base + CONFIRMATION_SEED_OFFSET + j for j in range(spec.confirmation.seeds)]


def _groups(rows: Sequence[TrialRow]) -> dict[str, list[TrialRow]]:
    """Complete search rows with values, by configuration (params key), in number order."""
    groups: dict[str, list[TrialRow]] = {}
    complete = (
        r
        for r in rows
        if r.kind == "search" and r.state == "complete" and r.values and r.number is not None
    )
    for row in sorted(complete, key=lambda r: r.number or 0):
        if row.config is not None:
            groups.setdefault(_key_of(row), []).append(row)
    return groups


def _key_of(row: TrialRow) -> str:
    from storage.models import params_key

    return row.confirms or params_key(row.params or {})


def _mean_values(group: Sequence[TrialRow]) -> list[float]:
    width = len(group[0].values or [])
    return [statistics.fmean((r.values or [])[i] for r in group) for i in range(width)]


def chosen(rows: Sequence[TrialRow], spec: StudySpec, experiment: Experiment) -> list[TrialRow]:
    """The search rows standing for the configurations to confirm (the first trial of each),
    best first."""
    groups = _groups(rows)
    if not groups:
        return []
    keys = list(groups)
    means = [_mean_values(groups[k]) for k in keys]
    top = spec.confirmation.top
    study_directions = directions(spec, experiment)
    if len(study_directions) == 1:
        order = sorted(range(len(keys)), key=lambda i: -means[i][0])
    else:
        front = pareto_indices(means, study_directions)
        # Most of a large front: the members best on the sum of their per-objective ranks.
        ranks = [
            _ranks([means[i][d] for i in front], direction)
            for d, direction in enumerate(study_directions)
        ]
        by_rank = sorted(range(len(front)), key=lambda j: sum(r[j] for r in ranks))
        order = [front[j] for j in by_rank]
    return [groups[keys[i]][0] for i in order[:top]]


def _ranks(values: Sequence[float], direction: str) -> list[int]:
    order = sorted(range(len(values)), key=lambda i: values[i], reverse=direction == "maximize")
    ranks = [0] * len(values)
    for rank, i in enumerate(order):
        ranks[i] = rank
    return ranks


def uniform_config(config: Mapping[str, Any], experiment: Experiment) -> dict[str, Any]:
    """``config`` with uniform weights: strategy ``fixed``, every task's weight 1."""
    return {
        **config,
        "strategy": "fixed",
        "strategy_params": {},
        "weights": dict.fromkeys(experiment.task_names, 1.0),
    }


def plan(rows: Sequence[TrialRow], spec: StudySpec, experiment: Experiment) -> list[QueuedRun]:
    """The runs confirming a finished search (module docstring); [] when there is nothing to
    confirm (no complete trial, or confirmation is off)."""
    if not spec.confirmation.enabled:
        return []
    best = chosen(rows, spec, experiment)
    if not best:
        return []
    targets: list[tuple[str, dict[str, Any] | None, dict[str, Any]]] = [
        (_key_of(row), row.params, dict(row.config or {})) for row in best
    ]
    if spec.confirmation.uniform:
        targets.append((UNIFORM, None, uniform_config(best[0].config or {}, experiment)))
    runs = []
    for seed in confirmation_seeds(spec):
        for confirms, params, config in targets:
            # The run's own data order: a batched pass gives all its trials one.
            trained = {**config, "seed": seed, "data_seed": None}
            runs.append(QueuedRun(confirms, params, trained, seed))
    return runs


@dataclass(frozen=True)
class Spread:
    """Mean ± sd of one quantity over the confirmation seeds that completed."""

    mean: float
    sd: float
    n: int
    values: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread | None:
        finite = [float(v) for v in values if v is not None and math.isfinite(v)]
        if not finite:
            return None
        sd = statistics.stdev(finite) if len(finite) > 1 else 0.0
        return cls(statistics.fmean(finite), sd, len(finite), finite)

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "sd": self.sd, "n": self.n, "values": self.values}


def difference(a: Spread, b: Spread) -> tuple[float, float]:
    """``a.mean - b.mean`` and its standard error."""
    se = math.sqrt(a.sd**2 / a.n + b.sd**2 / b.n)
    return a.mean - b.mean, se


Judgement = Literal["better", "within_noise", "worse"]


def judge(a: Spread, b: Spread) -> tuple[Judgement, float, float]:
    """Whether ``a`` is above ``b`` by more than the seed noise, within it, or below it."""
    diff, se = difference(a, b)
    if diff > NOISE_FACTOR * se:
        return "better", diff, se
    if diff < -NOISE_FACTOR * se:
        return "worse", diff, se
    return "within_noise", diff, se


__all__ = [
    "CONFIRMATION_SEED_OFFSET",
    "NOISE_FACTOR",
    "UNIFORM",
    "Judgement",
    "Spread",
    "chosen",
    "confirmation_seeds",
    "difference",
    "judge",
    "plan",
    "uniform_config",
]
