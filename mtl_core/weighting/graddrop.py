"""GradDrop: gradient sign dropout (Chen et al., NeurIPS 2020)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.weighting._base import (
    GradientSpace,
    GradientWeighting,
    StepInputs,
    StrategyConfig,
    normalise,
)
from mtl_core.weighting._registry import STRATEGIES

#: Upper bound (exclusive) of the per-step seed drawn from a trial's generator.
_SEED_BOUND = 2**62


class GradDropConfig(StrategyConfig):
    """GradDrop's hyper-parameters.

    Args:
        leak: ℓ, the share of every task gradient that passes unmasked (0: pure GradDrop,
            1: the plain sum), the same for every task.
    """

    leak: float = Field(0.0, ge=0, le=1, description="Share of each task gradient kept unmasked.")


def sign_dropout(grads: Tensor, uniform: Tensor, leak: Tensor) -> Tensor:
    """GradDrop's combination of ``[K, T, P]`` task gradients with draws ``uniform [K, P]``.

    Per element p: P = ½ (1 + Σ_t g_tp / Σ_t |g_tp|); task t keeps g_tp if g_tp > 0 and
    P > U_p, or g_tp < 0 and P < U_p; the result is Σ_t (ℓ_k + (1 - ℓ_k) M_tp) g_tp
    (``leak`` ``[K]``). An element where every task gradient is 0 adds 0 (P is set to ½).
    """
    total = grads.sum(dim=1)
    magnitude = grads.abs().sum(dim=1)
    positive = magnitude > 0
    purity = 0.5 * (1 + total / torch.where(positive, magnitude, torch.ones_like(magnitude)))
    purity = torch.where(positive, purity, torch.full_like(purity, 0.5)).unsqueeze(1)
    u = uniform.unsqueeze(1)
    mask = ((purity > u) & (grads > 0)) | ((purity < u) & (grads < 0))
    leak = leak.to(grads.dtype).reshape(-1, 1, 1)
    return ((leak + (1 - leak) * mask.to(grads.dtype)) * grads).sum(dim=1)


@STRATEGIES.register("graddrop")
class GradDrop(GradientWeighting[GradDropConfig]):
    """Keep, element by element, the task-gradient components of one randomly chosen sign.

    Chen, Ngiam, Huang, Luong, Kretzschmar, Chai & Anguelov, "Just Pick a Sign: Optimizing
    Deep Multitask Models with Gradient Sign Dropout", NeurIPS 2020. With g_t the gradient of
    scale_t · L_t w.r.t. the shared representation (the paper's placement: the trainer's
    ``representation`` gradient space; `ConfigError` where the architecture exposes none),
    per element of the representation (batch dimension included):

        P = ½ (1 + Σ_t g_t / Σ_t |g_t|),   U ~ U(0, 1),
        M_t = [P > U] [g_t > 0] + [P < U] [g_t < 0],
        update = Σ_t (ℓ + (1 - ℓ) M_t) g_t,

    back-propagated through the shared layers; each task's own parameters get its own
    gradient of scale_t · L_t. f is the identity (the paper's default). U: one seed per step
    drawn from the trial's generator, then float32 uniforms on the gradients' device from a
    generator seeded with it (no host sync; a trial draws the same whatever K it trains in).

    Defaults: ℓ = 0 (paper, LibMTL and torchjd). LibMTL's form marginalises over the batch
    (one mask per feature, from sign(z) ∘ Σ_batch g_t); this one, like torchjd's, masks every
    element (as stated above). GradDrop has no per-task weights: reported weights are 1 on
    the active tasks.
    """

    name = "graddrop"
    config_cls = GradDropConfig

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.leak = self._per_slot(0.0)

    @classmethod
    def gradient_space(cls, config: StrategyConfig) -> GradientSpace:
        return "representation"

    def _reset(self, slot: int, config: GradDropConfig) -> None:
        self.leak[slot] = config.leak

    def uniforms(self, size: int, device: torch.device) -> Tensor:
        """``[K, size]`` float32 U(0, 1) draws of this step; a free slot draws nothing (1s)."""
        rows = []
        for ctx in self.contexts:
            if ctx is None:
                rows.append(torch.ones(size, device=device))
                continue
            seed = int(torch.randint(_SEED_BOUND, (1,), generator=ctx.generator))
            local = torch.Generator(device=device).manual_seed(seed)
            rows.append(torch.rand(size, generator=local, device=device))
        return torch.stack(rows)

    def combine(self, grads: Tensor, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        uniform = self.uniforms(grads.shape[-1], grads.device).to(grads.dtype)
        combined = sign_dropout(grads, uniform, self.leak)
        active = inputs.scale > 0
        return combined, normalise(active.to(inputs.losses.dtype), active)
