"""Train a list of configs together: `train_batch` over the one trainer's slots."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from mtl_core.batched.slots import SlotReport
from mtl_core.batched.trainer import BatchedRun, Precision
from mtl_core.config import TrialConfig
from mtl_core.errors import TrialStopped
from mtl_core.experiments import DataSplits
from mtl_core.results import EpochReport, TrialResult

logger = logging.getLogger(__name__)


def train_batch(
    configs: list[TrialConfig],
    data_dir: Path | str | None = None,
    on_epoch: Callable[[int, EpochReport], None] | None = None,
    progress: bool = False,
    data: DataSplits | None = None,
    precision: Precision = "fp32",
    compile: bool = False,
) -> list[TrialResult]:
    """Train ``configs`` together and return their results in the same order.

    ``on_epoch(i, report)`` is called for trial ``configs[i]`` after each of its epochs and may
    raise `TrialStopped` to prune that trial only. A trial that diverges ends with a
    ``stop_reason`` starting with `DIVERGED`. On CUDA out-of-memory before the first epoch
    ends, the batch is split in two halves that train one after the other.

    Raises:
        ConfigError: the configs cannot be batched together (see `can_batch_together`).
    """
    if not configs:
        return []
    run = None
    try:
        run = BatchedRun(configs, data_dir, data=data, precision=precision, compile=compile)

        def handle(reports: list[SlotReport]) -> list[int]:
            stop: list[int] = []
            for item in reports:
                if on_epoch is None:
                    continue
                try:
                    on_epoch(int(item.tag), item.report)
                except TrialStopped as exc:
                    run_slot = run.slots[item.slot] if run is not None else None
                    epoch = run_slot.epoch if run_slot is not None else item.report.epoch
                    reason = str(exc) or f"stopped after epoch {epoch}"
                    finished_early[item.slot] = reason
                    stop.append(item.slot)
            return stop

        finished_early: dict[int, str] = {}
        done = run.run(handle, progress=progress)
    except torch.cuda.OutOfMemoryError:
        if len(configs) == 1 or (run is not None and run.reported_epochs > 0):
            raise
        del run
        torch.cuda.empty_cache()
        half = len(configs) // 2
        logger.warning("CUDA out of memory with K=%d; retrying as K=%d", len(configs), half)

        def shifted(offset: int) -> Callable[[int, EpochReport], None] | None:
            if on_epoch is None:
                return None
            return lambda i, report: on_epoch(i + offset, report)

        return train_batch(
            configs[:half], data_dir, shifted(0), progress, data, precision, compile
        ) + train_batch(configs[half:], data_dir, shifted(half), progress, data, precision, compile)
    results: list[TrialResult | None] = [None] * len(configs)
    for item in done:
        result = item.result
        reason = finished_early.get(item.slot)
        if reason is not None and result.stop_reason is not None:
            result.stop_reason = reason
        results[int(item.tag)] = result
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]
