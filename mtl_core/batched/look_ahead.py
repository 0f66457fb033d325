"""Each step's `LookAhead` for a batch of meta-learned trials (Auto-λ, MOML, FORUM).

The strategy evaluates the K models at parameters of its choosing (the look-ahead step, a
finite-difference point), on the step's training rows and on a batch of the *validation*
split. Validation rows are drawn with replacement from each live trial's own generator at
every step, before the strategy's own draws, so a trial sees the same validation batches
whatever K it trains in (free slots read row 0 and are masked).

The forward is always the vmapped functional call, K = 1 included: the trainer's direct call
at K = 1 runs the model's own tensors and cannot take others. Buffers are copied for every
look-ahead call: BatchNorm's running statistics belong to the real step only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from mtl_core.batched.slots import Slot
from mtl_core.batched.stacking import FunctionalModel, Params, StackedForward, meta_template
from mtl_core.experiments import DataSplits, Split
from mtl_core.optim import SGD_MOMENTUM, StackedOptimizer
from mtl_core.weighting import LookAhead, grads_of


class LookAheadSource:
    """Builds the `LookAhead` of each step of one `BatchedRun`.

    Args:
        template: the run's template (`FunctionalModel`; at K = 1 the one around the real model).
        per_trial: the run's per-trial function (task losses inside the vmap).
        param_names: the model's parameter names, in the order of the look-ahead's tensors.
        data: the run's prepared splits.
        optimizer: the run's optimizer (learning rates, weight decay, SGD's momentum).
        batch_size: rows of each validation batch.
        device: where the models run.
        autocast: whether the step runs under bf16 autocast.
    """

    def __init__(
        self,
        template: FunctionalModel,
        per_trial: Callable[..., Any],
        param_names: Sequence[str],
        data: DataSplits,
        optimizer: StackedOptimizer,
        batch_size: int,
        device: torch.device,
        autocast: bool,
    ) -> None:
        # At K > 1 the template holds no storage already; at K = 1 it wraps the real model.
        on_meta = all(p.is_meta for p in template.parameters())
        self._forward = StackedForward(
            template if on_meta else meta_template(template.model), per_trial
        )
        self.device = device
        self.param_names = list(param_names)
        self.data = data
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.autocast = autocast

    def draw_validation_rows(self, slots: Sequence[Slot | None]) -> Tensor:
        """``[K, B]`` validation rows, each live slot's from its trial's generator."""
        n_val = len(self.data.val)
        rows = [
            torch.randint(n_val, (self.batch_size,), generator=slot.ctx.generator)
            if slot is not None
            else torch.zeros(self.batch_size, dtype=torch.long)
            for slot in slots
        ]
        return torch.stack(rows).to(self.data.val.x.device)

    def _losses_at(
        self, split: Split, rows: Tensor, batched: bool, buffers: Params
    ) -> Callable[[Sequence[Tensor]], Tensor]:
        x = split.x[rows].to(self.device, non_blocking=True)
        targets = [t[rows].to(self.device, non_blocking=True) for t in split.targets]

        def losses_at(params: Sequence[Tensor]) -> Tensor:
            named = dict(zip(self.param_names, params, strict=True))
            own_buffers = {name: b.clone() for name, b in buffers.items()}
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.autocast):
                out = self._forward(
                    named, own_buffers, x, *targets, x_batched=batched, extra_batched=batched
                )
            return out[0]

        return losses_at

    def build(
        self,
        params: Params,
        buffers: Params,
        targets: Sequence[Tensor],
        train_rows: Tensor,
        batched: bool,
        val_rows: Tensor,
    ) -> LookAhead:
        """The step's `LookAhead`.

        Args:
            params: the run's stacked parameters (``[K, ...]``).
            buffers: the run's stacked buffers.
            targets: the tensors the step's losses were computed from, in ``param_names``
                order (at K = 1 the model's own, without the leading 1).
            train_rows: the step's training rows (``[B]``, or ``[K, B]`` when ``batched``).
            batched: whether ``train_rows`` differ per slot.
            val_rows: `draw_validation_rows`.
        """
        k = val_rows.shape[0]
        values = [params[name].detach() for name in self.param_names]

        def gradients(objective: Tensor, create_graph: bool = False) -> list[Tensor]:
            grads = grads_of(objective, targets, retain=True, create_graph=create_graph)
            return [g.reshape(v.shape) for g, v in zip(grads, values, strict=True)]

        momentum = None
        if self.optimizer.kind == "sgd":
            # SGD's buffer is empty before a slot's first step: no momentum term there.
            held = self.optimizer.has_momentum
            # The optimizer holds the parameters in the run's order, then the strategy's.
            position = {name: i for i, name in enumerate(params)}
            buffers_of = [self.optimizer.exp_avg[position[name]] for name in self.param_names]
            momentum = [
                SGD_MOMENTUM * buffer * held.reshape(k, *([1] * (buffer.dim() - 1))).to(buffer)
                for buffer in buffers_of
            ]
        # At K = 1 the step differentiates the model's own tensors: [1, ...] views of them.
        trained = [
            t if t.shape == v.shape else t.unsqueeze(0)
            for t, v in zip(targets, values, strict=True)
        ]
        return LookAhead(
            params=values,
            trained=trained,
            train_losses=self._losses_at(self.data.train, train_rows, batched, buffers),
            val_losses=self._losses_at(self.data.val, val_rows, True, buffers),
            gradients=gradients,
            lr=self.optimizer.lr,
            weight_decay=self.optimizer.weight_decay,
            momentum=momentum,
        )
