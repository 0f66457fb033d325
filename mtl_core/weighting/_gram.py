"""The task gradients' Gram matrix in float64, over a leading trial dimension K.

Shared by the gradient methods that only need inner products of task gradients (GradVac,
Nash-MTL, FairGrad). Accumulated over chunks of the parameter dimension so the float64
copy of the gradients never exceeds a fixed size.
"""

from __future__ import annotations

import torch
from torch import Tensor

# float64 elements per chunk when reducing over the parameter dimension P.
_CHUNK_ELEMENTS = 1 << 24


def gram64(grads: Tensor) -> Tensor:
    """``[K, T, T]`` float64 Gram matrices ``⟨g_s, g_t⟩`` of ``grads [K, T, P]`` (detached)."""
    num_slots, num_tasks, _ = grads.shape
    chunk = max(1, _CHUNK_ELEMENTS // max(1, num_slots * num_tasks))
    gram = torch.zeros(num_slots, num_tasks, num_tasks, dtype=torch.float64, device=grads.device)
    for part in grads.detach().split(chunk, dim=2):
        p = part.to(torch.float64)
        gram += p @ p.transpose(1, 2)
    return gram
