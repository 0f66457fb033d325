"""CR-MOGM: correlation-reduced stochastic multi-objective gradient manipulation (Zhou et al.,
NeurIPS 2022)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.components import searched
from mtl_core.weighting._base import (
    GradientWeighting,
    StepInputs,
    StrategyConfig,
    one_active_task_unit,
)
from mtl_core.weighting._registry import STRATEGIES

#: The linear gradient methods whose weights CR-MOGM can smooth.
Base = Literal["mgda", "cagrad", "gradvac", "nash_mtl", "fairgrad"]


class CRMOGMConfig(StrategyConfig):
    """CR-MOGM's hyper-parameters.

    Args:
        alpha: weight of the previous smoothed weights in the moving average (0: the base
            method's weights as they are, 1: the first step's weights for ever).
        base: the gradient method whose weights are smoothed (with its default config).
    """

    alpha: float = Field(
        0.9,
        ge=0,
        le=1,
        description="Moving-average weight of the previous weights.",
        json_schema_extra=searched(0.5, 0.99),
    )
    base: Base = Field("mgda", description="The gradient method whose weights are smoothed.")


@STRATEGIES.register("cr_mogm")
class CRMOGM(GradientWeighting[CRMOGMConfig]):
    """Smooth a gradient method's task weights with a moving average across steps.

    Zhou, Zhang, Jiang, Zhong, Gu & Zhu, "On the Convergence of Stochastic
    Multi-Objective Gradient Manipulation and Beyond", NeurIPS 2022. With λ̂_k the
    coefficients the ``base`` method (MGDA by default, with its default config) gives the
    task gradients at step k:

        λ_k = α λ_{k-1} + (1 - α) λ̂_k,   λ_1 = λ̂_1,    update Σ_t λ_k,t g_t

    which reduces the correlation between the weights and the stochastic gradients that
    keeps stochastic MGDA-type methods from converging. α = 0.9 by default as torchjd's
    ``CRMOGMWeighting`` (the paper's analysis lets α_k grow toward 1 as the learning rate
    decays, α_k = 1 - lr_k / lr_0; here α is fixed per trial). The base runs as its own
    strategy inside (its state, its draws from the trial's generator); an inactive task
    has λ̂ = 0 and gets weight 0, and with one active task its gradient is used as is. No
    host sync beyond the base's own. Reported weights: λ normalised to Σ = T.
    """

    name = "cr_mogm"
    config_cls = CRMOGMConfig

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.alpha = self._per_slot(0.9, torch.float64)
        self.smoothed = self._zeros(torch.float64)
        self.started = torch.zeros(num_slots, dtype=torch.bool, device=device)
        self.slot_base: list[str | None] = [None] * num_slots
        self.bases: dict[str, GradientWeighting[StrategyConfig]] = {}

    def _reset(self, slot: int, config: CRMOGMConfig) -> None:
        self.alpha[slot] = config.alpha
        self.smoothed[slot] = 0
        self.started[slot] = False
        previous = self.slot_base[slot]
        if previous is not None and previous != config.base:
            self.bases[previous].release_slot(slot)
        if config.base not in self.bases:
            cls = STRATEGIES.get(config.base)
            inner = cls(self.num_slots, self.num_tasks, self.device)
            assert isinstance(inner, GradientWeighting)
            self.bases[config.base] = inner
        ctx = self.contexts[slot]
        assert ctx is not None
        self.bases[config.base].reset_slot(slot, STRATEGIES.get(config.base).config_cls(), ctx)
        self.slot_base[slot] = config.base

    def release_slot(self, slot: int) -> None:
        super().release_slot(slot)
        base = self.slot_base[slot]
        if base is not None:
            self.bases[base].release_slot(slot)
        self.slot_base[slot] = None

    def coefficients(self, grads: Tensor, inputs: StepInputs) -> Tensor:
        active = inputs.scale > 0
        raw = torch.zeros_like(self.smoothed)
        for name, inner in self.bases.items():
            mine = [base == name for base in self.slot_base]
            if not any(mine):
                continue
            rows = torch.tensor(mine, device=grads.device)
            own = StepInputs(
                inputs.losses, inputs.scale, inputs.last_shared, inputs.occupied & rows
            )
            coeff = inner.coefficients(grads, own).to(torch.float64)
            raw = torch.where(rows.unsqueeze(1), coeff, raw)
        raw = torch.where(active, raw, 0.0)
        live = inputs.occupied.unsqueeze(1)
        alpha = self.alpha.unsqueeze(1)
        average = alpha * self.smoothed + (1 - alpha) * raw
        fresh = torch.where(self.started.unsqueeze(1), average, raw)
        self.smoothed = torch.where(live, fresh, self.smoothed)
        self.started = self.started | inputs.occupied
        coeff = torch.where(active, self.smoothed, 0.0)
        return one_active_task_unit(coeff, active).to(grads.dtype)
