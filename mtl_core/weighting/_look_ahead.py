"""What a meta-learned strategy sees beyond the step's losses: the model as a function.

Auto-λ, MOML and FORUM learn their task weights from the *validation* loss of the model after
a look-ahead step. A strategy that says so (`WeightingStrategy.reads_validation`) gets a
`LookAhead` in `StepInputs.look_ahead` at every step: the K trials' parameters, the task
losses of the step's training batch and of a validation batch at any parameters of the same
shapes, and each trial's optimizer settings for the look-ahead step. The trainer draws the
validation batch from each trial's own generator, so a trial sees the same batches at any K.

Everything is over the leading trial dimension K, like the strategies themselves; the
functions run every trial at once (trials share no tensor, so one gradient of a sum over
trials gives each trial its own).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mtl_core.errors import ConfigError

#: ``losses_at(params)``: the ``[K, T]`` task losses, with graph, at ``params`` (one tensor per
#: model parameter, ``[K, ...]``, in `LookAhead.params` order).
LossesAt = Callable[[Sequence[Tensor]], Tensor]


def _expand(values: Tensor, like: Tensor) -> Tensor:
    """A ``[K]`` tensor shaped to broadcast against ``like`` (``[K, ...]``)."""
    return values.reshape(values.shape[0], *([1] * (like.dim() - 1))).to(like.dtype)


@dataclass
class LookAhead:
    """The model of every slot as a function of its parameters, for one step.

    Args:
        params: the K trials' model parameters, ``[K, ...]`` each, detached.
        train_losses: `LossesAt` on the step's training batch (the batch of `StepInputs.losses`).
        val_losses: `LossesAt` on the step's validation batch.
        gradients: ``gradients(objective, create_graph=False)``: the gradient of a scalar
            built from `StepInputs.losses` w.r.t. the parameters, ``[K, ...]`` each, graph kept
            (the step's own backward follows); ``create_graph`` to differentiate through it.
        trained: the parameters as the step's own backward sees them (``[K, ...]``): losses
            computed at these (`LossesAt`) reach the model's update, for a strategy whose
            update holds a validation gradient (FORUM).
        lr: ``[K]`` each trial's learning rate.
        weight_decay: ``[K]`` each trial's weight decay.
        momentum: SGD's ``momentum × buffer`` per parameter (0 before a slot's first step);
            None for Adam and AdamW.
    """

    params: list[Tensor]
    train_losses: LossesAt
    val_losses: LossesAt
    gradients: Callable[[Tensor, bool], list[Tensor]]
    trained: list[Tensor]
    lr: Tensor
    weight_decay: Tensor
    momentum: list[Tensor] | None = None

    def virtual_step(self, grads: Sequence[Tensor], lr: Tensor | None = None) -> list[Tensor]:
        """θ' = θ − α (m + g + wd · θ): one step of the trial's optimizer with gradient ``g``.

        As the Auto-λ authors' code takes it: SGD's momentum term ``m`` where the optimizer
        keeps one, the trial's weight decay, and a plain gradient step for Adam (its
        preconditioner is not applied). ``lr`` (``[K]``) replaces the trial's learning rate
        (MOML's inner step size).
        """
        rate = self.lr if lr is None else lr
        stepped = []
        for i, (theta, g) in enumerate(zip(self.params, grads, strict=True)):
            direction = g + _expand(self.weight_decay, theta) * theta
            if self.momentum is not None:
                direction = direction + self.momentum[i]
            stepped.append(theta - _expand(rate, theta) * direction)
        return stepped


def flat(tensors: Sequence[Tensor]) -> Tensor:
    """``[K, P]``: each trial's tensors flattened and joined."""
    return torch.cat([t.reshape(t.shape[0], -1) for t in tensors], dim=1)


def moved(params: Sequence[Tensor], direction: Sequence[Tensor], step: Tensor) -> list[Tensor]:
    """``θ + step_k · d`` per trial (``step``: ``[K]``)."""
    return [p + _expand(step, p) * d for p, d in zip(params, direction, strict=True)]


def leaves(tensors: Sequence[Tensor]) -> list[Tensor]:
    """Detached copies that take gradients (the point a look-ahead differentiates at)."""
    return [t.detach().requires_grad_(True) for t in tensors]


def grads_of(
    total: Tensor, inputs: Sequence[Tensor], retain: bool = False, create_graph: bool = False
) -> list[Tensor]:
    """d total / d inputs, zeros where an input does not reach ``total``."""
    if not inputs:
        return []
    return list(
        torch.autograd.grad(
            total,
            list(inputs),
            retain_graph=retain or create_graph,
            create_graph=create_graph,
            allow_unused=True,
            materialize_grads=True,
        )
    )


def require_look_ahead(look: LookAhead | None, name: str) -> LookAhead:
    """``look``, or the `ConfigError` of a meta-learned strategy ``name`` run without one."""
    if look is None:
        raise ConfigError(
            f"strategy {name!r} learns its weights through a look-ahead step on validation "
            "batches, which only the trainer provides"
        )
    return look


def per_task_gradients(
    losses: Tensor, gradient: Callable[[Tensor], Sequence[Tensor]]
) -> list[Tensor]:
    """Per parameter, ``[K, T, ...]``: row t is the gradient of ``losses[:, t]`` (``[K, T]``).

    ``gradient`` maps a scalar to its gradients, one ``[K, ...]`` tensor per parameter, and
    keeps the graph (`LookAhead.gradients`, or `grads_of` with ``retain``). One backward per
    task serves all K trials (they share no tensor); an inactive task's row is 0 when its
    losses were multiplied by 0.
    """
    rows = [gradient(losses[:, t].sum()) for t in range(losses.shape[-1])]
    return [torch.stack(per_param, dim=1) for per_param in zip(*rows, strict=True)]


def flat_tasks(tensors: Sequence[Tensor]) -> Tensor:
    """``[K, T, P]``: `per_task_gradients`' tensors flattened and joined per trial and task."""
    return torch.cat([t.reshape(t.shape[0], t.shape[1], -1) for t in tensors], dim=2)


def softmax_backward(z: Tensor, v: Tensor) -> Tensor:
    """``J(α)ᵀ v`` for task weights ``z = softmax(α)`` over the last dimension.

    The Jacobian ``J = diag(z) - z zᵀ`` is symmetric, so this is also ``J v``: the gradient
    w.r.t. the logits α of ``Σ_t z_t v_t``. Tasks outside a masked softmax have ``z_t = 0``
    and get 0. ``z`` broadcasts against ``v`` (``[K, T]`` with ``[K, I, T]`` gives the rows
    of ``v J``).
    """
    return z * (v - (z * v).sum(dim=-1, keepdim=True))
