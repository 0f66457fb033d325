"""Gate arithmetic shared by the mixture-of-experts architectures (MMoE, CGC / PLE, DSelect-k)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def mix(weights: Tensor, outputs: Sequence[Tensor]) -> Tensor:
    """Σ_e weights[:, e] · outputs[e], for ``weights`` ``[B, E]`` and E outputs ``[B, ...]``."""
    stacked = torch.stack(list(outputs), dim=1)  # [B, E, ...]
    # Broadcast each weight over the trailing feature dimensions of the experts' output.
    return (weights.reshape(*weights.shape, *(1,) * (stacked.dim() - 2)) * stacked).sum(dim=1)


def softmax_gate(gate: nn.Module, gate_input: Tensor) -> Tensor:
    """softmax(gate(flatten(gate_input))): ``[B, E]`` mixture weights, rows summing to 1."""
    return torch.softmax(gate(gate_input.flatten(1)), dim=-1)
