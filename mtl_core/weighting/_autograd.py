"""The autograd plumbing of one step, shared by the trainer and `MultiTaskLoss`.

A strategy decides *what* to combine (`_base`); this module turns its decision into one
gradient per tensor: the model's shared and task-specific parameters (leading dim K, or
plain tensors with K = 1) and the strategy's own learnable tensors. Gradients are returned,
not accumulated, so the caller clips and steps as it likes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import Tensor

from mtl_core.errors import ConfigError
from mtl_core.weighting._base import GradientSpace, StepInputs
from mtl_core.weighting._look_ahead import grads_of
from mtl_core.weighting._mixed import MixedStrategy


def task_gradients(weighted: Tensor, inputs: Sequence[Tensor], num_slots: int) -> Tensor:
    """Per-trial gradients of every task's ``weighted[:, t]`` w.r.t. ``inputs``: ``[K, T, P]``.

    One backward per task reaches all K trials at once (trials share no parameter); an
    inactive task's row is exactly zero because its loss is multiplied by 0. The graph is
    kept for the backward passes that follow.
    """
    rows = []
    for t in range(weighted.shape[-1]):
        grads = grads_of(weighted[:, t].sum(), inputs, retain=True)
        rows.append(torch.cat([g.reshape(num_slots, -1) for g in grads], dim=1))
    return torch.stack(rows, dim=1)


def _grads_through(
    representation: Tensor, combined: Tensor, inputs: Sequence[Tensor]
) -> list[Tensor]:
    """Gradients w.r.t. ``inputs`` of the representation given its gradient ``combined``."""
    outputs = combined.reshape(representation.shape).to(representation.dtype)
    return list(
        torch.autograd.grad(
            representation,
            list(inputs),
            grad_outputs=outputs,
            retain_graph=True,
            allow_unused=True,
            materialize_grads=True,
        )
    )


def _unflatten(flat: Tensor, like: Sequence[Tensor], num_slots: int) -> list[Tensor]:
    out, offset = [], 0
    for p in like:
        n = p.numel() // num_slots
        out.append(flat[:, offset : offset + n].reshape(p.shape).to(p.dtype))
        offset += n
    return out


def strategy_gradients(
    strategy: MixedStrategy,
    inputs: StepInputs,
    shared: Sequence[Tensor],
    task_specific: Sequence[Tensor],
    space: GradientSpace,
    representation: Tensor | None = None,
    regularization: Tensor | None = None,
) -> tuple[list[Tensor], list[Tensor], list[Tensor], Tensor]:
    """One step's gradients: (shared, task-specific, strategy tensors, weights ``[K, T]``).

    ``space`` is where the batch's strategies work (`WeightingStrategy.gradient_space`):
    ``loss`` back-propagates the strategy's objective; ``parameters`` combines the task
    gradients (of `GradientWeighting.task_objectives`) on ``shared`` and gives every
    task-specific tensor its own task's gradient, and the strategy's own tensors the gradient
    of its `GradientWeighting.parameter_objective`;
    with ``inputs.extra_losses`` (MoDo, SDMGrad) their task gradients on ``shared`` reach
    ``combine`` as ``inputs.extra_grads``, and the update batch's task-specific gradients are
    the ones given (``inputs.losses``);
    ``representation`` (MGDA-UB, GradDrop) combines the task gradients w.r.t.
    ``representation`` instead, back-propagates the combination through the shared layers
    and gives every task-specific tensor its own task's gradient.
    """
    k = strategy.num_slots
    extra = strategy.parameters()
    reg = (
        regularization.sum()
        if regularization is not None and regularization.requires_grad
        else torch.zeros((), device=inputs.losses.device)
    )
    n_shared = len(shared)
    if space == "loss":
        objective, weights = strategy.objective(inputs)
        grads = grads_of(objective.sum() + reg, [*shared, *task_specific, *extra])
        end = n_shared + len(task_specific)
        return grads[:n_shared], grads[n_shared:end], grads[end:], weights
    if not shared:
        raise ConfigError(
            f"strategy {', '.join(strategy.names)} needs an architecture with shared parameters "
            "(hard sharing or MMoE); this model has none"
        )
    weighted = strategy.task_objectives(inputs)
    own = strategy.parameter_objective(inputs)
    extra_grads = (
        grads_of(own.sum(), extra, retain=True)
        if own is not None and extra
        else [torch.zeros_like(p) for p in extra]
    )
    if space == "representation":
        if representation is None:
            raise ConfigError(
                f"strategy {', '.join(strategy.names)} works on the shared representation and "
                "needs an architecture that exposes one (hard sharing, shared_depth > 0)"
            )
        per_task = task_gradients(weighted, [representation], k)
        combined, weights = strategy.combine(per_task, inputs)
        # The combined representation gradient goes down the shared layers; each task's own
        # parameters get their task's gradient, as in the parameter space.
        shared_grads = _grads_through(representation, combined, shared)
        task_grads = grads_of(weighted.sum() + reg, task_specific, retain=reg.requires_grad)
        if reg.requires_grad:
            shared_grads = [g + r for g, r in zip(shared_grads, grads_of(reg, shared), strict=True)]
        return shared_grads, task_grads, extra_grads, weights
    per_task = task_gradients(weighted, shared, k)
    if inputs.extra_losses:
        # MoDo, SDMGrad: the task gradients of the step's other independent batches.
        other_batches = tuple(
            task_gradients(strategy.task_objectives(replace(inputs, losses=losses)), shared, k)
            for losses in inputs.extra_losses
        )
        inputs = replace(inputs, extra_grads=other_batches)
    combined, weights = strategy.combine(per_task, inputs)
    shared_grads = _unflatten(combined, shared, k)
    task_grads = grads_of(weighted.sum() + reg, task_specific, retain=reg.requires_grad)
    if reg.requires_grad:
        shared_grads = [g + r for g, r in zip(shared_grads, grads_of(reg, shared), strict=True)]
    return shared_grads, task_grads, extra_grads, weights
