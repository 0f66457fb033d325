"""One optimizer over the stacked tensors of K trials, with per-trial hyper-parameters.

Every state tensor (Adam's moments, SGD's momentum buffer, the step count) has the leading
dimension K of the parameters it belongs to; learning rate, weight decay and the gradient-clip
norm are ``[K]`` tensors. One update is a handful of element-wise kernels over all K trials
(not K optimizers), and it reproduces `torch.optim.Adam` / `AdamW` / `SGD(momentum=0.9)`
(the trial config's optimizer choices) trial by trial, including per-slot step counts so a slot
refilled mid-run starts its bias correction from step 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtl_core.errors import ConfigError

SGD_MOMENTUM = 0.9
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_


def _expand(values: Tensor, like: Tensor) -> Tensor:
    """A ``[K]`` tensor shaped to broadcast against ``like`` (``[K, ...]``)."""
    return values.reshape(values.shape[0], *([1] * (like.dim() - 1))).to(like.dtype)


def per_trial_grad_norm(grads: Sequence[Tensor]) -> Tensor:
    """Each trial's global gradient norm, ``[K]``, over all its stacked gradients."""
    total = torch.zeros(grads[0].shape[0], device=grads[0].device, dtype=torch.float32)
    for g in grads:
        total = total + g.float().pow(2).reshape(g.shape[0], -1).sum(dim=1)
    return total.sqrt()


def clip_per_trial(grads: Sequence[Tensor], max_norm: Tensor) -> None:
    """Scale each trial's gradients in place so that its global norm is at most ``max_norm[k]``.

    ``max_norm`` is ``[K]``; ``inf`` leaves the trial unclipped (``grad_clip=None``). Same rule
    as `torch.nn.utils.clip_grad_norm_`: coefficient ``min(1, max_norm / (norm + 1e-6))``.
    """
    norm = per_trial_grad_norm(grads)
    coef = torch.clamp(max_norm / (norm + CLIP_EPS), max=1.0)
    for g in grads:
        g.mul_(_expand(coef, g))


class StackedOptimizer:
    """Adam, AdamW or SGD (momentum 0.9) over stacked tensors; hyper-parameters are ``[K]``.

    Args:
        kind: ``"adam"``, ``"adamw"`` or ``"sgd"`` (all trials of a batch share it).
        params: the stacked tensors it updates (model parameters and strategy parameters).
        lr: ``[K]`` learning rates.
        weight_decay: ``[K]`` weight decays (L2 for Adam / SGD, decoupled for AdamW).
    """

    def __init__(self, kind: str, params: Sequence[Tensor], lr: Tensor, weight_decay: Tensor):
        if kind not in ("adam", "adamw", "sgd"):
            raise ConfigError(f"optimizer must be one of adam, adamw, sgd, got {kind!r}")
        if lr.dim() != 1 or weight_decay.shape != lr.shape:
            raise ValueError(
                f"lr and weight_decay must be [K], got {lr.shape=}, {weight_decay.shape=}"
            )
        self.kind = kind
        self.params = list(params)
        self.lr = lr
        self.weight_decay = weight_decay
        k = lr.shape[0]
        device = lr.device
        self.step_count = torch.zeros(k, device=device, dtype=torch.float64)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params] if kind != "sgd" else []
        # Known on the host, so a batch without weight decay skips its kernels.
        self._has_decay = bool((weight_decay != 0).any())
        # SGD's first step copies the gradient into the buffer; track which slots have one.
        self.has_momentum = torch.zeros(k, device=device, dtype=torch.bool)

    def add_params(self, params: Sequence[Tensor]) -> None:
        """Add stacked tensors (a strategy that joined the batch) with fresh state."""
        for p in params:
            self.params.append(p)
            self.exp_avg.append(torch.zeros_like(p))
            if self.kind != "sgd":
                self.exp_avg_sq.append(torch.zeros_like(p))

    def reset_slot(self, index: int, lr: float, weight_decay: float) -> None:
        """Fresh state for a refilled slot."""
        with torch.no_grad():
            self.step_count[index] = 0
            self.has_momentum[index] = False
            self.lr[index] = lr
            self.weight_decay[index] = weight_decay
            self._has_decay = self._has_decay or weight_decay != 0
            for state in (*self.exp_avg, *self.exp_avg_sq):
                state[index].zero_()

    def copy_slot(self, source: int, target: int) -> None:
        """Slot ``target`` takes slot ``source``'s whole state: it steps as ``source`` would.

        Copied: the rows of the parameters and of every state tensor (moments or momentum
        buffer), the step count, the momentum flag, the learning rate and the weight decay.
        The host-side decay flag needs nothing: it is set once any slot had a decay, the
        source's included.
        """
        with torch.no_grad():
            for tensor in (
                self.step_count,
                self.has_momentum,
                self.lr,
                self.weight_decay,
                *self.params,
                *self.exp_avg,
                *self.exp_avg_sq,
            ):
                tensor[target] = tensor[source]

    @torch.no_grad()
    def step(self, grads: Sequence[Tensor], active: Tensor, all_active: bool = False) -> None:
        """Apply one update with ``grads`` (one per parameter) to the slots where ``active``.

        ``all_active`` (known on the host) skips the masking when every slot is live.
        """
        if len(grads) != len(self.params):
            raise ValueError(f"need one gradient per parameter, got {len(grads)=}")
        self.step_count += active.to(self.step_count.dtype)
        if self.kind == "sgd":
            self._sgd(grads, active)
        else:
            self._adam(grads, active, all_active)
        self.has_momentum |= active

    def _adam(self, grads: Sequence[Tensor], active: Tensor, all_active: bool) -> None:
        beta1, beta2 = ADAM_BETAS
        steps = self.step_count.clamp(min=1)
        # Bias corrections in float64 on [K], like the Python floats torch.optim computes.
        bc1 = 1 - beta1**steps
        bc2_sqrt = (1 - beta2**steps).sqrt()
        step_size = self.lr.double() / bc1
        decays = bool(self._has_decay)
        if all_active:
            self._adam_all(grads, step_size, bc2_sqrt, decays)
            return
        for p, g, m, v in zip(self.params, grads, self.exp_avg, self.exp_avg_sq, strict=True):
            if self.kind == "adamw":
                decay = 1 - _expand(self.lr * self.weight_decay, p)
            elif decays:
                g = g + _expand(self.weight_decay, p) * p
            keep = _expand(active, p).bool()
            if self.kind == "adamw":
                p.copy_(torch.where(keep, p * decay, p))
            new_m = torch.lerp(m, g, 1 - beta1)
            new_v = torch.addcmul(v * beta2, g, g, value=1 - beta2)
            denom = new_v.sqrt() / _expand(bc2_sqrt, p) + ADAM_EPS
            new_p = p - _expand(step_size, p) * (new_m / denom)
            m.copy_(torch.where(keep, new_m, m))
            v.copy_(torch.where(keep, new_v, v))
            p.copy_(torch.where(keep, new_p, p))

    def _adam_all(
        self, grads: Sequence[Tensor], step_size: Tensor, bc2_sqrt: Tensor, decays: bool
    ) -> None:
        """Every slot live: multi-tensor in-place ops, same arithmetic as `torch.optim.Adam`."""
        beta1, beta2 = ADAM_BETAS
        params = self.params
        if decays and self.kind == "adamw":
            torch._foreach_mul_(
                params, [1 - _expand(self.lr * self.weight_decay, p) for p in params]
            )
        elif decays:
            grads = torch._foreach_add(
                list(grads),
                torch._foreach_mul(params, [_expand(self.weight_decay, p) for p in params]),
            )
        torch._foreach_lerp_(self.exp_avg, list(grads), 1 - beta1)
        torch._foreach_mul_(self.exp_avg_sq, beta2)
        torch._foreach_addcmul_(self.exp_avg_sq, list(grads), list(grads), value=1 - beta2)
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, [_expand(bc2_sqrt, p) for p in params])
        torch._foreach_add_(denom, ADAM_EPS)
        update = torch._foreach_div(self.exp_avg, denom)
        torch._foreach_mul_(update, [_expand(step_size, p) for p in params])
        torch._foreach_sub_(params, update)

    def _sgd(self, grads: Sequence[Tensor], active: Tensor) -> None:
        for p, g, buf in zip(self.params, grads, self.exp_avg, strict=True):
            keep = _expand(active, p).bool()
            d_p = g + _expand(self.weight_decay, p) * p
            first = _expand(~self.has_momentum, p).bool()
            new_buf = torch.where(first, d_p, buf * SGD_MOMENTUM + d_p)
            new_p = p - _expand(self.lr, p) * new_buf
            buf.copy_(torch.where(keep, new_buf, buf))
            p.copy_(torch.where(keep, new_p, p))
