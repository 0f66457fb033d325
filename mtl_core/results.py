"""What training reports: per-epoch reports and the trial's result."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeGuard

from mtl_core.config import ResolvedConfig
from mtl_core.errors import ConfigError


@dataclass
class EpochReport:
    """One epoch of one trial.

    Args:
        epoch: 1-based epoch number.
        train_loss: epoch-mean unscaled train loss per task.
        val_metrics: each task's main metric on the validation split.
        val_extra: further metrics, keyed ``"task/metric"``.
        weights: the strategy's mean weights over the epoch (Σ = number of tasks).
        elapsed_s: seconds since the trial started.
    """

    epoch: int
    train_loss: dict[str, float]
    val_metrics: dict[str, float]
    val_extra: dict[str, float]
    weights: dict[str, float]
    elapsed_s: float


@dataclass
class TrialResult:
    """The outcome of one trial.

    ``val_metrics`` / ``test_metrics`` are measured after the last epoch that ran.
    ``stop_reason`` is None for a trial that ran all its epochs. ``num_slots`` is the K of the
    batched pass it trained in: with its config (seed, ``data_seed``) it determines the run,
    since a slot's arithmetic depends on K but not on what the other slots hold
    (``BatchedRun([config], num_slots=K)`` retrains it alone, bit for bit on CPU).

    ``population`` is None unless the trial trained as a member of a population
    (population-based training of its fixed loss weights, `mtl_core.batched.population`):
    then its config alone no longer determines the run, and this says what happened to it::

        {"trajectory": [{"epoch": 0, "weights": {task: w, ...}}, {"epoch": 4, ...}, ...],
         "lineage": [{"epoch": 4, "source": 12}],
         "epochs": 10}

    ``trajectory``: the raw fixed weights (as in ``config.weights``) in force after ``epoch``
    completed epochs, sorted, the first at 0; ``lineage``: after ``epoch`` epochs the trial
    took the model, optimizer and strategy state of trial ``source`` (its Optuna number);
    ``epochs``: the trial's planned epochs. `mtl_core.build_loss_from_best` replays the
    trajectory in a production run; `population_trajectory` reads it back, checked.
    """

    config: ResolvedConfig
    epochs_run: int
    val_metrics: dict[str, float]
    test_metrics: dict[str, float]
    test_extra: dict[str, float]
    history: list[EpochReport] = field(default_factory=list)
    stop_reason: str | None = None
    duration_s: float = 0.0
    num_slots: int = 1
    population: dict[str, Any] | None = None

    @property
    def final_weights(self) -> dict[str, float]:
        """The weights the strategy applied in the last epoch (its mean; Σ = tasks)."""
        return self.history[-1].weights if self.history else {}

    @property
    def weights_trajectory(self) -> list[dict[str, float]]:
        """The weights the strategy applied, one epoch-mean per epoch that ran (Σ = tasks)."""
        return [dict(report.weights) for report in self.history]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["config"] = self.config.model_dump()
        out["final_weights"] = self.final_weights
        return out


def population_trajectory(
    population: Mapping[str, Any] | None, tasks: Collection[str] = ()
) -> list[tuple[int, dict[str, float]]]:
    """A recorded `TrialResult.population`'s fixed weights, as ``(epochs completed,
    {task: weight})`` in order; empty for None (a trial outside a population).

    Args:
        tasks: the tasks every entry must weigh, no more and no fewer (empty: not checked).

    Raises:
        ConfigError: ``trajectory`` is not a list of ``{"epoch", "weights"}`` with integer
            epochs strictly increasing from 0 and a finite weight >= 0 for each of `tasks`.
    """
    if population is None:
        return []
    entries = population.get("trajectory") if isinstance(population, Mapping) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(
            f"population has no 'trajectory' list of {{'epoch', 'weights'}}, got {population!r}"
        )
    expected = set(tasks)
    steps: list[tuple[int, dict[str, float]]] = []
    for index, entry in enumerate(entries):
        where = f"population.trajectory[{index}]"
        epoch = entry.get("epoch") if isinstance(entry, Mapping) else None
        weights = entry.get("weights") if isinstance(entry, Mapping) else None
        previous = steps[-1][0] if steps else -1
        if not _is_int(epoch) or epoch <= previous or (previous < 0 and epoch != 0):
            raise ConfigError(
                f"{where} has epoch {epoch!r}: epochs must be integers strictly increasing "
                f"from 0 (the one before: {previous if steps else 'none'})"
            )
        if not isinstance(weights, Mapping) or (expected and set(weights) != expected):
            raise ConfigError(
                f"{where} must give the weight of every task ({', '.join(sorted(expected))}) "
                f"and no other, got {weights!r}"
            )
        for task, weight in weights.items():
            if not _is_weight(weight):
                raise ConfigError(
                    f"{where} weight of {task!r} must be finite and >= 0, got {weight!r}"
                )
        steps.append((epoch, {task: float(weight) for task, weight in weights.items()}))
    return steps


def planned_epochs(population: Mapping[str, Any]) -> int:
    """A recorded population's ``epochs``: the trial's planned epochs, what its trajectory's
    epochs are out of.

    Raises:
        ConfigError: not an integer >= 1.
    """
    epochs = population.get("epochs")
    if not _is_int(epochs) or epochs < 1:
        raise ConfigError(f"population.epochs must be an integer >= 1, got {epochs!r}")
    return int(epochs)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_weight(value: Any) -> bool:
    """A finite number >= 0 (NaN fails the comparison)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < math.inf
