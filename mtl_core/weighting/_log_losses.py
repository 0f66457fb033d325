"""The log of the scaled task losses, with a floor, for the strategies that work in log space."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def loss_floor(dtype: torch.dtype) -> float:
    """The smallest loss whose log is taken: sqrt(tiny) of ``dtype`` (about 1e-19 in float32).

    Below it a loss counts as zero. The square root leaves room for gradients of the form
    value / loss, which a floor at ``tiny`` itself would overflow.
    """
    return float(torch.finfo(dtype).tiny) ** 0.5


def floored_log(scaled: Tensor, active: Tensor) -> tuple[Tensor, Tensor]:
    """(``log scaled`` with graph, ``usable``), both ``[K, T]``.

    ``usable``: active and above `loss_floor`. An active entry at or below the floor (zero
    or negative included) gets the log of the floor as a constant (no gradient, never NaN);
    an inactive entry gets 0. No host sync.
    """
    floor = loss_floor(scaled.dtype)
    usable = active & (scaled > floor)
    # Where no log is taken the argument is 1, so neither branch can make a NaN gradient.
    logs = torch.log(torch.where(usable, scaled, torch.ones_like(scaled)))
    logs = torch.where(usable | ~active, logs, torch.full_like(logs, math.log(floor)))
    return logs, usable
