"""The one trainer over K slots (stacked parameters, vmap; K = 1 for a trial alone).

`train_batch` trains a list of compatible configs and returns their results; `BatchedRun` is
the slot-based form a worker drives (prune a slot, refill it with a new trial). Use
`can_batch_together` / `plan_batches` to group trials; `mtl_core.trainer.train_trial` is K = 1.

*Slots.* A `BatchedRun` holds K slots. Each slot holds one trial: its resolved config, its
`TaskContext` (own seeded generator, shared by its schedule and strategy), its schedule, its
epoch counter and history. Parameters, buffers (BatchNorm running statistics included),
optimizer state, per-trial hyper-parameters (learning rate, weight decay, clip norm, fixed
weights) and strategy state are tensors of leading dim K (`stacking`, `optim`,
`mtl_core.weighting`).

*One step.* All K models run as one ``vmap(functional_call)`` on the same batch (at K = 1 the
model is called directly: no vmap); the ``[K, T]`` task losses feed the strategy, and
`mtl_core.weighting.strategy_gradients` turns its decision into one gradient per tensor (one
backward of the sum over trials for loss-based strategies; T backward passes over all trials
for gradient methods, never a loop over trials); a fused optimizer updates all K at once. No
host sync inside the epoch: the divergence flags are accumulated on the device and read once
per epoch.

*Random draws, per trial, in this order.* At the start of each of its epochs a trial's
schedule draws the multipliers of every step of that epoch from the trial's generator; then,
step by step, its strategy draws (RLW's logits, PCGrad's task orders) from the same
generator. The model's initial weights come from ``torch.manual_seed(seed)`` and the epoch's
data order from ``torch.Generator().manual_seed(data_seed)``, the i-th draw being epoch i's
order (``data_seed`` is the run's, shared by every slot, whatever epoch a slot joined at).
None of it depends on the other slots. The arithmetic does not either (what the other slots
hold, which slot, the mix of strategies, slots joining at other epochs), but it does depend on
K: batched kernels sum in another order at another K (K = 1, called without vmap, differs in
about the 7th digit). Each `TrialResult` therefore carries ``num_slots``, and
``BatchedRun([result.config], num_slots=result.num_slots)`` retrains that trial alone bit for
bit on CPU (`mtl_core.reproduce`).

*Pruning and refill (masking).* Epochs run in lockstep for every slot (same data size and
batch size, so the same number of steps). After each epoch the caller may `stop` a slot
(pruned: it gets its test metrics and leaves) and `refill` a free slot with a new trial,
which starts at its own epoch 0 while the others continue. A free slot is *masked*, not
removed: its rows still run through the kernels (shapes stay fixed, which keeps a compiled
step valid) but the optimizer leaves them untouched and nothing is reported for them. When
slots sit at different epochs they read different permutations, so the batch is gathered per
slot (``[K, B, ...]`` input) for those epochs; otherwise one shared ``[B, ...]`` batch is used.

*Divergence, per slot.* A trial whose loss, task gradients or solver became NaN/inf is ended
after that epoch with ``stop_reason`` starting with `DIVERGED` (naming the task, or the
strategy's step, and the epoch); the other slots carry on unchanged (trials share no tensor).

*Evaluation.* After each epoch every slot is evaluated on the validation split in one
batched pass (`evaluation`); the trials leaving at one epoch boundary share one pass over the
test split.
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
