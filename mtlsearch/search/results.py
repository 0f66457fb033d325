"""What a finished trial recorded: its resolved config and metrics, under keys named once.

The same outcome is stored as Optuna user attributes (local runs, ``mtlsearch run``) and as
columns of our ``mtl_trials`` rows (the service); `TrialOutcome` converts between both, so the
key strings live only here (the field names are the keys).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from mtl_core.results import TrialResult
    from storage import TrialRow


@dataclass(frozen=True, slots=True)
class TrialOutcome:
    """A trial's recorded outcome; every field is optional (a failed trial has few).

    ``strategy_weights`` are the strategy's own weights λ (on top of the config's fixed
    weights: all 1 under ``fixed``), their mean over the last epoch, and ``weights_trajectory``
    the same mean for every epoch (Σ = tasks, whatever the strategy); the effective weight of
    a task is its config weight times λ (`mtl_core.production.effective_loss_weights`).
    ``seed`` (also in ``config``) and ``num_slots``, the K of the batched pass the trial
    trained in, with the ``config`` (its ``data_seed``) determine the run
    (`mtl_core.reproduce`). ``population`` is a population member's trajectory of fixed
    weights, lineage and planned epochs (`mtl_core.results.TrialResult.population`), None for
    a trial outside a population; as a user attribute it shows on the dashboard.
    """

    config: dict[str, Any] | None = None
    weights_normalised: dict[str, float] | None = None
    val_metrics: dict[str, float] | None = None
    test_metrics: dict[str, float] | None = None
    strategy_weights: dict[str, Any] | None = None
    weights_trajectory: list[dict[str, Any]] | None = None
    epochs_run: int | None = None
    seed: int | None = None
    num_slots: int | None = None
    population: dict[str, Any] | None = None
    stop_reason: str | None = None
    fail_reason: str | None = None

    @classmethod
    def from_result(cls, result: TrialResult) -> TrialOutcome:
        """A trained trial's resolved config and metrics."""
        return cls(
            config=result.config.model_dump(mode="json"),
            val_metrics=dict(result.val_metrics),
            test_metrics=dict(result.test_metrics),
            strategy_weights=dict(result.final_weights),
            weights_trajectory=result.weights_trajectory,
            epochs_run=result.epochs_run,
            seed=result.config.seed,
            num_slots=result.num_slots,
            population=result.population,
            stop_reason=result.stop_reason or None,
        )

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> TrialOutcome:
        """The outcome in an Optuna trial's user attributes (other keys are ignored)."""
        return cls(**{f.name: attrs[f.name] for f in fields(cls) if f.name in attrs})

    @classmethod
    def from_row(cls, row: TrialRow) -> TrialOutcome:
        """The outcome in one of our ``mtl_trials`` rows (its ``reason`` is the fail reason)."""
        return cls(
            config=row.config,
            weights_normalised=row.weights_normalised,
            val_metrics=row.val_metrics,
            test_metrics=row.test_metrics,
            strategy_weights=row.strategy_weights,
            weights_trajectory=row.weights_trajectory,
            epochs_run=row.epochs_run,
            seed=row.seed,
            num_slots=row.num_slots,
            population=row.population,
            fail_reason=row.reason,
        )

    def json_safe(self) -> TrialOutcome:
        """This outcome with non-finite numbers (a diverged trial's NaN metrics) as None:
        strict JSON, which PostgreSQL's JSON columns require."""
        changes = {f.name: _finite(getattr(self, f.name)) for f in fields(self)}
        return TrialOutcome(**changes)

    def as_attrs(self) -> dict[str, Any]:
        """The fields that are set, as Optuna user attributes."""
        return {key: value for key, value in asdict(self).items() if value is not None}


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def set_user_attrs(trial: optuna.Trial, attrs: Mapping[str, Any]) -> None:
    """Set every ``key: value`` of `attrs` on a live trial, through Optuna's public API."""
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


__all__ = ["TrialOutcome", "set_user_attrs"]
