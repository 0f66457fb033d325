"""The two independent batches' cross Gram matrix that MoDo and SDMGrad update their weights on."""

from __future__ import annotations

from torch import Tensor

from mtl_core.errors import ConfigError
from mtl_core.weighting._base import StepInputs
from mtl_core.weighting._gram import cross_gram64


def cross_batch_gram(inputs: StepInputs, name: str) -> Tensor:
    """``[K, T, T]`` float64 ``A = J₁ J₂ᵀ`` of the step's two extra batches (active tasks only).

    ``J₁``, ``J₂`` are the task gradients of `StepInputs.extra_grads`; their batches are drawn
    independently of each other and of the update batch, so ``A`` estimates ``J Jᵀ`` without
    the bias of one batch's Gram matrix (the point of both methods).
    """
    if len(inputs.extra_grads) != 2:
        raise ConfigError(
            f"strategy {name!r} reads 3 independent batches per step: give the losses of 2 "
            f"more batches (got the task gradients of {len(inputs.extra_grads)})"
        )
    first, second = inputs.extra_grads
    return cross_gram64(first, second, inputs.scale > 0)
