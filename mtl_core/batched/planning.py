"""Which trials can train together in one batch, and how to group a list of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mtl_core.architectures import make_architecture
from mtl_core.config import ResolvedConfig, TrialConfig
from mtl_core.errors import ConfigError
from mtl_core.experiments import get_experiment
from mtl_core.trial_setup import resolve_config
from mtl_core.weighting import STRATEGIES, GradientSpace, parse_strategy_config

#: Fields that must agree for trials to share one batch.
_BATCH_KEY_FIELDS = (
    "experiment",
    "architecture",
    "architecture_params",
    "schedule",
    "schedule_params",
    "epochs",
    "batch_size",
    "optimizer",
    "device",
    "max_train_samples",
)


def batchable(config: TrialConfig) -> bool:
    """Whether ``config`` has a batched form (its strategy and settings are supported)."""
    try:
        strategy_config = parse_strategy_config(config.strategy, config.strategy_params)
        resolved = resolve_config(config, get_experiment(config.experiment))
        architecture = make_architecture(resolved.architecture, resolved.architecture_params)
    except (ConfigError, KeyError, ValueError):
        return False
    # A strategy that reads the shared parameters fails on an architecture that shares none:
    # training alone reports that error for the one trial instead of the whole batch.
    strategy = STRATEGIES.get(config.strategy)
    if strategy.needs_shared_parameters and not architecture.shares_parameters():
        return False
    # Likewise a strategy that works on the shared representation on one that exposes none.
    space = strategy.gradient_space(strategy_config)
    return space != "representation" or architecture.exposes_representation()


def gradient_space(resolved: ResolvedConfig) -> GradientSpace:
    """Where the trial's strategy works (trials of one batch share it)."""
    config = parse_strategy_config(resolved.strategy, resolved.strategy_params)
    return STRATEGIES.get(resolved.strategy).gradient_space(config)


def batch_key(resolved: ResolvedConfig, epochs: bool = True) -> tuple[Any, ...]:
    """What trials must share to train in one batch (a refill may differ in ``epochs``)."""
    values = resolved.model_dump()
    fields = [f for f in _BATCH_KEY_FIELDS if epochs or f != "epochs"]
    key: list[Any] = [repr(values[name]) for name in fields]
    key.append(gradient_space(resolved))
    # The batch shares one data pipeline: strategies must read as many batches per step.
    key.append(STRATEGIES.get(resolved.strategy).batches_per_step)
    # Meta-learned strategies make the batch draw validation batches and look-ahead steps.
    key.append(STRATEGIES.get(resolved.strategy).reads_validation)
    return tuple(key)


def can_batch_together(configs: Sequence[TrialConfig]) -> bool:
    """Whether ``configs`` can train in one batch.

    They must be `batchable`, of one experiment, and agree on architecture (and its
    parameters), schedule (and its parameters), epochs, batch size, optimizer kind, device
    and training-set size; their strategies must work in one gradient space (all loss-based,
    all on the shared parameters, or all on the shared representation); explicit
    ``data_seed`` values must agree (the batch shares one data order).
    """
    if not configs or not all(batchable(c) for c in configs):
        return False
    try:
        experiment = get_experiment(configs[0].experiment)
        resolved = [resolve_config(c, experiment) for c in configs]
    except (ConfigError, KeyError, ValueError):
        return False
    if any(c.experiment != configs[0].experiment for c in configs):
        return False
    if len({batch_key(r) for r in resolved}) != 1:
        return False
    return len({c.data_seed for c in configs if c.data_seed is not None}) <= 1


def plan_batches(configs: Sequence[TrialConfig], max_k: int) -> list[list[int]]:
    """Group ``configs`` (by index) into batches of at most ``max_k`` that can train together.

    Configs that are not `batchable` come back as groups of one: train those with
    `mtl_core.trainer.train_trial` (K = 1). Order within a group follows ``configs``.
    """
    if max_k < 1:
        raise ValueError(f"max_k must be >= 1, got {max_k=}")
    groups: dict[tuple[Any, ...], list[int]] = {}
    out: list[list[int]] = []
    for index, config in enumerate(configs):
        if not batchable(config):
            out.append([index])
            continue
        try:
            resolved = resolve_config(config, get_experiment(config.experiment))
        except (ConfigError, KeyError, ValueError):
            out.append([index])
            continue
        key = (*batch_key(resolved), config.data_seed)
        group = groups.setdefault(key, [])
        group.append(index)
        if len(group) == max_k:
            out.append(group)
            groups[key] = []
    out.extend(group for group in groups.values() if group)
    return out
