"""Study specs of quick synthetic studies, for the worker, client and end-to-end tests."""

from __future__ import annotations

from typing import Any


def quick_spec(
    name: str = "s", *, n_trials: int = 2, max_train_samples: int = 300, **overrides: Any
) -> dict[str, Any]:
    """A study of the generated `synthetic` experiment that trains in about a second a trial.

    Two epochs, the random sampler, no pruner and the ``weighted_mean`` objective (no
    baselines to train first), no confirmation at the end (its own tests turn it on).

    Args:
        name: the study name.
        n_trials: the trial budget.
        max_train_samples: training samples per trial (``search_space.max_train_samples``).
        **overrides: top-level spec fields; ``search_space`` is merged into the default one.
    """
    search_space: dict[str, Any] = {"epochs": 2, "max_train_samples": max_train_samples}
    search_space.update(overrides.pop("search_space", {}))
    spec: dict[str, Any] = {
        "name": name,
        "experiment": "synthetic",
        "n_trials": n_trials,
        "seed": 0,
        "sampler": "random",
        "pruner": "none",
        "objective": {"kind": "weighted_mean"},
        "search_space": search_space,
        "confirmation": {"enabled": False},
    }
    spec.update(overrides)
    return spec


__all__ = ["quick_spec"]
