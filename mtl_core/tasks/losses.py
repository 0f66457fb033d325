"""The built-in task losses: each maps (prediction, target) to a scalar, mean over the batch.

A loss is a plain function ``loss(pred, target) -> Tensor`` registered by name with
`register_loss` (whose docstring states the contract a user's own loss meets too). Shapes:
``pred`` is the task head's output ``[B, output_dim]``; ``target`` is ``[B]`` class indices for
cross-entropy, ``[B, output_dim]`` 0/1 floats for BCE, ``[B]`` or ``[B, output_dim]`` floats for
the regression losses and a probability vector ``[B, output_dim]`` for KL.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mtl_core.tasks._registry import register_loss


def _match(pred: Tensor, target: Tensor) -> Tensor:
    # Regression heads output [B, 1] for a [B] target.
    if pred.dim() == target.dim() + 1 and pred.shape[-1] == 1:
        return pred.squeeze(-1)
    return pred


@register_loss("cross_entropy")
def cross_entropy(pred: Tensor, target: Tensor) -> Tensor:
    return F.cross_entropy(pred, target.long())


@register_loss("bce_with_logits")
def bce_with_logits(pred: Tensor, target: Tensor) -> Tensor:
    """Binary / multi-label: one independent sigmoid per output."""
    pred = _match(pred, target)
    return F.binary_cross_entropy_with_logits(pred, target.to(pred.dtype))


@register_loss("mse")
def mse(pred: Tensor, target: Tensor) -> Tensor:
    pred = _match(pred, target)
    return F.mse_loss(pred, target.to(pred.dtype))


@register_loss("l1")
def l1(pred: Tensor, target: Tensor) -> Tensor:
    pred = _match(pred, target)
    return F.l1_loss(pred, target.to(pred.dtype))


@register_loss("huber")
def huber(pred: Tensor, target: Tensor) -> Tensor:
    """Huber loss with delta = 1."""
    pred = _match(pred, target)
    return F.huber_loss(pred, target.to(pred.dtype), delta=1.0)


@register_loss("kl_div")
def kl_div(pred: Tensor, target: Tensor) -> Tensor:
    """KL(target ‖ softmax(pred)): ``pred`` are logits, ``target`` a probability vector."""
    return F.kl_div(torch.log_softmax(pred, dim=-1), target.to(pred.dtype), reduction="batchmean")
