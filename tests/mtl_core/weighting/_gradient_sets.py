"""Small fixed task-gradient sets the gradient methods' oracle tests share."""

from __future__ import annotations

import torch
from torch import Tensor


def with_inactive_tasks(num_slots: int) -> tuple[Tensor, Tensor]:
    """(``[K, 4, 6]`` float64 gradients, ``[K, 4]`` scale): task 1 inactive in every slot,
    task 3 in the last one too; the inactive rows are zero, as the trainer gives them."""
    gen = torch.Generator().manual_seed(3)
    grads = torch.randn(num_slots, 4, 6, generator=gen, dtype=torch.float64)
    scale = torch.ones(num_slots, 4, dtype=torch.float64)
    scale[:, 1] = 0.0
    scale[-1, 3] = 0.0
    return grads * scale.unsqueeze(-1), scale


def degenerate_slots() -> Tensor:
    """``[5, 5, 3]`` float64: five slots of five tasks, one random and then an opposite pair,
    a duplicate pair, rank 1 with mixed signs, and all zero."""
    gen = torch.Generator().manual_seed(5)
    grads = torch.randn(5, 5, 3, generator=gen, dtype=torch.float64)
    grads[1, 1] = -grads[1, 0]
    grads[2, 1] = grads[2, 0]
    grads[3] = grads[3, :1] * torch.tensor([[1.0], [-2.0], [0.5], [-0.1], [3.0]])
    grads[4] = 0.0
    return grads
