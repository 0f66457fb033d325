"""Train K trials of one experiment in one batched pass (stacked parameters, vmap).

`train_batch` trains a list of compatible configs and returns their results; `BatchedRun` is
the slot-based form a worker drives (prune a slot, refill it with a new trial). Use
`can_batch_together` to decide, and fall back to `mtl_core.trainer.train_trial` otherwise.
"""

from __future__ import annotations

from mtl_core.batched.memory import auto_batch_size
from mtl_core.batched.strategies import BATCHED, BatchedStrategy
from mtl_core.batched.trainer import (
    DIVERGED,
    BatchedRun,
    FinishedTrial,
    SlotReport,
    batchable,
    can_batch_together,
    plan_batches,
    train_batch,
)

__all__ = [
    "BATCHED",
    "DIVERGED",
    "BatchedRun",
    "BatchedStrategy",
    "FinishedTrial",
    "SlotReport",
    "auto_batch_size",
    "batchable",
    "can_batch_together",
    "plan_batches",
    "train_batch",
]
