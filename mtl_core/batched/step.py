"""One optimisation step of every slot of a `BatchedRun`: forward, strategy, gradients, update.

`SlotStep` holds what a step reads and never replaces (the stacked tensors, the strategy,
the optimizer, the clip norms, the training split); the run keeps the per-epoch state (which
slots are live, the schedule's table, the sums) and calls `SlotStep.step` once per step. How
the step works is the package's docstring (`mtl_core.batched`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from mtl_core.batched.look_ahead import LookAheadSource
from mtl_core.batched.slots import Slot
from mtl_core.batched.stacking import (
    DirectForward,
    FunctionalModel,
    Params,
    StackedForward,
    StackSpec,
)
from mtl_core.experiments import DataSplits, Experiment
from mtl_core.optim import StackedOptimizer, clip_per_trial
from mtl_core.tasks import task_losses
from mtl_core.weighting import GradientSpace, LookAhead, MixedStrategy, StepInputs
from mtl_core.weighting import strategy_gradients as gradients_of_strategy


class SlotStep:
    """The step of one run's K slots (K = 1: the model called directly).

    Args:
        params / buffers: the run's stacked tensors (their storage is updated in place).
        targets: the tensors gradients are taken w.r.t. (at K = 1 the model's own).
        spec: their names, shared and last-shared ones.
        template: the structure the forward calls.
        strategy / optimizer / clip: the run's (``clip``: ``[K]``, inf where a trial does not
            clip).
        experiment / losses / space: the tasks, their loss functions, the batch's gradient
            space.
        data: the prepared splits (training rows and, for meta-learned strategies, validation).
        precision / compile: bf16 autocast; `torch.compile` of the forward.
    """

    def __init__(
        self,
        params: Params,
        buffers: Params,
        targets: Params,
        spec: StackSpec,
        template: FunctionalModel,
        strategy: MixedStrategy,
        optimizer: StackedOptimizer,
        clip: Tensor,
        experiment: Experiment,
        losses: list[Any],
        space: GradientSpace,
        data: DataSplits,
        batch_size: int,
        device: torch.device,
        precision: str,
        compile: bool,
    ) -> None:
        self.params, self.buffers, self.targets, self.spec = params, buffers, targets, spec
        self.strategy, self.optimizer, self.clip = strategy, optimizer, clip
        self.experiment, self.losses, self.space = experiment, losses, space
        self.data, self.device, self.precision = data, device, precision
        self.num_slots = strategy.num_slots
        forward_cls = DirectForward if self.num_slots == 1 else StackedForward
        forward = forward_cls(template, self._per_trial)
        self._forward: Callable[..., Any] = torch.compile(forward) if compile else forward
        # Meta-learned strategies evaluate the models at look-ahead points on validation rows.
        self._look_ahead = (
            LookAheadSource(
                template,
                self._per_trial,
                spec.param_names,
                data,
                optimizer,
                batch_size,
                device,
                precision == "bf16",
            )
            if strategy.reads_validation
            else None
        )
        shared = set(spec.shared)
        self._shared_names = [n for n in spec.param_names if n in shared]
        self._task_names = [n for n in spec.param_names if n not in shared]

    def _per_trial(
        self,
        outputs: tuple[Tensor, ...],
        representation: Tensor | None,
        regularization: Tensor,
        *targets: Tensor,
    ) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor | None]:
        # Inside the vmap over trials when K > 1: see `register_loss` for what a loss may do.
        losses = task_losses(self.losses, self.experiment.task_names, outputs, targets)
        if self.space == "representation":
            return losses.float(), regularization.float(), representation
        return losses.float(), regularization.float()

    def _forward_batch(self, rows: Tensor, batched: bool) -> tuple[Tensor, ...]:
        train = self.data.train
        x = train.x[rows].to(self.device, non_blocking=True)
        targets = [t[rows].to(self.device, non_blocking=True) for t in train.targets]
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16"):
            return tuple(
                self._forward(
                    self.params, self.buffers, x, *targets, x_batched=batched, extra_batched=batched
                )
            )

    def step(
        self,
        batches: list[Tensor],
        batched: bool,
        scale: Tensor,
        occupied: Tensor,
        slots: list[Slot | None],
        clipping: bool,
        all_live: bool,
    ) -> tuple[Tensor, Tensor]:
        """One optimisation step of every slot on the training rows of ``batches`` (each
        ``[B]``, or ``[K, B]`` when ``batched``); returns (losses ``[K, T]``, weights).

        A strategy that reads n independent batches gets n: the update is computed on the
        last, the others reach it as `StepInputs.extra_losses`. ``clipping``: some trial
        clips its gradients; ``all_live``: every slot holds a trial (no masking).
        """
        *others, out = [self._forward_batch(rows, batched) for rows in batches]
        losses, reg = out[0], out[1]
        extra_losses = tuple(other[0] for other in others)
        inputs = StepInputs(
            losses=losses,
            scale=scale,
            last_shared=[self.targets[n] for n in self.spec.last_shared],
            occupied=occupied,
            extra_losses=extra_losses,
            look_ahead=self._step_look_ahead(batches[-1], batched, slots),
        )
        shared, task_grads, strategy_grads, weights = gradients_of_strategy(
            self.strategy,
            inputs,
            [self.targets[n] for n in self._shared_names],
            [self.targets[n] for n in self._task_names],
            self.space,
            representation=out[2] if len(out) > 2 else None,
            regularization=reg,
        )
        by_name = dict(zip(self._shared_names, shared, strict=True))
        by_name.update(zip(self._task_names, task_grads, strict=True))
        grads = [by_name[n] for n in self.spec.param_names]
        if self.num_slots == 1:  # gradients of the model's own [...] parameters
            grads = [g.unsqueeze(0) for g in grads]
        if clipping:
            clip_per_trial(grads, self.clip)
        self.optimizer.step([*grads, *strategy_grads], occupied, all_active=all_live)
        # The step's training loss: the mean over its batches.
        reported = torch.stack([losses, *extra_losses]).mean(dim=0) if extra_losses else losses
        return reported.detach(), weights.detach()

    def _step_look_ahead(
        self, rows: Tensor, batched: bool, slots: list[Slot | None]
    ) -> LookAhead | None:
        """The step's `LookAhead` where the batch's strategies read validation batches."""
        if self._look_ahead is None:
            return None
        return self._look_ahead.build(
            self.params,
            self.buffers,
            [self.targets[n] for n in self.spec.param_names],
            rows,
            batched,
            self._look_ahead.draw_validation_rows(slots),
        )


__all__ = ["SlotStep"]
