"""The one trainer over K slots (stacked parameters, vmap; K = 1 for a trial alone).

`train_batch` trains a list of compatible configs and returns their results; `BatchedRun` is
the slot-based form a worker drives (prune a slot, refill it with a new trial). Use
`can_batch_together` / `plan_batches` to group trials; `mtl_core.trainer.train_trial` is K = 1.
"""

from __future__ import annotations

from mtl_core.batched.memory import auto_batch_size
from mtl_core.batched.planning import batchable, can_batch_together, plan_batches
from mtl_core.batched.slots import DIVERGED, FinishedTrial, SlotReport
from mtl_core.batched.train import train_batch
from mtl_core.batched.trainer import BatchedRun

__all__ = [
    "DIVERGED",
    "BatchedRun",
    "FinishedTrial",
    "SlotReport",
    "auto_batch_size",
    "batchable",
    "can_batch_together",
    "plan_batches",
    "train_batch",
]
