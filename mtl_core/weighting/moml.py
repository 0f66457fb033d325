"""MOML: task weights meta-learned as a multi-objective bi-level problem (Ye et al., 2021)."""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.components import searched
from mtl_core.optim import StackedOptimizer
from mtl_core.weighting._base import (
    LossWeighting,
    StepInputs,
    StrategyConfig,
    masked_softmax,
    normalise,
)
from mtl_core.weighting._gram import cross_gram64, gram64
from mtl_core.weighting._look_ahead import (
    LookAhead,
    flat_tasks,
    grads_of,
    leaves,
    per_task_gradients,
    require_look_ahead,
    softmax_backward,
)
from mtl_core.weighting._min_norm import min_norm_weights
from mtl_core.weighting._registry import STRATEGIES


class MOMLConfig(StrategyConfig):
    """MOML's hyper-parameters.

    Args:
        inner_lr: the step size of the look-ahead SGD step θ' (LibMTL's ``inner_lr``).
        lr: the step size of the task logits α (Adam; LibMTL's ``outer_lr``).
    """

    inner_lr: float = Field(
        0.1,
        gt=0,
        description="Step size of the look-ahead SGD step.",
        json_schema_extra=searched(1e-3, 1.0, log=True),
    )
    lr: float = Field(
        1e-3,
        gt=0,
        description="Step size of the task logits (Adam).",
        json_schema_extra=searched(1e-4, 1e-1, log=True),
    )


@STRATEGIES.register("moml")
class MOML(LossWeighting[MOMLConfig]):
    """Learn task weights whose one-step look-ahead lowers every task's *validation* loss at
    once, by a min-norm (MGDA) combination of the per-task hypergradients.

    Ye, Lin, Zhang, Ye & Zhang, "Multi-Objective Meta Learning", NeurIPS 2021; as LibMTL's
    ``bacth_forward_MOML`` with one inner step. Task logits α (init 0), z = softmax(α) over
    the active tasks, s_t the study's fixed weight times the schedule's multiplier. At every
    step, before the model's update, with the step's training batch and a validation batch:

        G_f[t]  = ∇_θ s_t L_t(θ)                                  (training gradients)
        θ'      = θ − inner_lr Σ_t z_t G_f[t]                     (plain SGD: no momentum,
                                                                    no weight decay)
        G_F[i]  = ∇_θ' L^val_i(θ')                                (validation gradients)
        H[i]    = −inner_lr G_F[i] G_fᵀ J,   J = diag(z) − z zᵀ   (∂L^val_i(θ')/∂α)
        d       = Σ_i w_i H[i] / ‖H[i]‖,   w = MGDA min-norm weights of the normalised rows

    (a zero row stays zero; the rows and columns of inactive tasks are 0) and α takes one Adam
    step (lr ``lr``, its own state per slot) along ``d``. The model's step then
    back-propagates Σ_t z_t s_t L_t with the new α. ``inner_lr`` and ``lr`` are searched
    over three decades around LibMTL's defaults (0.1 and 1e-3).

    The validation batch comes from the experiment's validation split (LibMTL takes a second
    training batch): a study that selects trials on validation metrics after meta-learning
    on that split is optimistic, which is why the test metrics stay untouched.

    Cost per step: 2T backward passes more than a fixed-weight step (T training gradients,
    T validation gradients at θ') and one forward pass at θ' on the validation batch.
    Reported weights: z normalised to Σ = T over the active tasks.
    """

    name = "moml"
    config_cls = MOMLConfig
    reads_validation: ClassVar[bool] = True

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.inner_lr = self._per_slot(0.1)
        self.logits = self._zeros()
        # α has its own Adam, as in LibMTL (not the trials' optimizer).
        self._optimizer = StackedOptimizer(
            "adam", [self.logits], lr=self._per_slot(1e-3), weight_decay=self._per_slot(0.0)
        )

    def _reset(self, slot: int, config: MOMLConfig) -> None:
        self.inner_lr[slot] = config.inner_lr
        self.logits[slot] = 0
        self._optimizer.reset_slot(slot, config.lr, 0.0)

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        look = require_look_ahead(inputs.look_ahead, self.name)
        active = inputs.scale > 0
        direction = self._direction(self._hypergradients(inputs, look), active)
        occupied = inputs.occupied
        direction = torch.where(occupied.unsqueeze(-1), direction, 0.0).to(self.logits.dtype)
        self._optimizer.step([direction], occupied)
        z = masked_softmax(self.logits, active)
        objective = (z.to(inputs.losses.dtype) * inputs.scale * inputs.losses).sum(dim=-1)
        return objective, normalise(z, active)

    def _hypergradients(self, inputs: StepInputs, look: LookAhead) -> Tensor:
        """``[K, I, T]`` H: row i is ∂L^val_i(θ')/∂α (0 for an inactive task i)."""
        active = inputs.scale > 0
        z = masked_softmax(self.logits, active)
        weighted = inputs.losses * inputs.scale
        train = per_task_gradients(weighted, lambda total: look.gradients(total, False))
        rate = self.inner_lr.to(z.dtype)
        ahead = leaves(
            [
                theta - torch.einsum("k,kt,kt...->k...", rate, z.to(g.dtype), g)
                for theta, g in zip(look.params, train, strict=True)
            ]
        )
        val = look.val_losses(ahead).float()
        g_val = flat_tasks(per_task_gradients(val, lambda total: grads_of(total, ahead, True)))
        # ∂θ'/∂α = −inner_lr G_fᵀ J, so ∂L^val_i/∂α = J (−inner_lr G_f G_F[i]). In float64:
        # the rows are normalised next, and Adam's first steps turn even a rounding-sized
        # direction (two opposite rows, d = 0) into a step of size lr.
        chain = -self.inner_lr.double()[:, None, None] * cross_gram64(g_val, flat_tasks(train))
        hyper = softmax_backward(z.double().unsqueeze(1), chain)
        return torch.where(active.unsqueeze(-1), hyper, torch.zeros_like(hyper))

    @staticmethod
    def _direction(hyper: Tensor, active: Tensor) -> Tensor:
        """``[K, T]`` MGDA combination of the L2-normalised rows of ``hyper`` (LibMTL's 'l2'),
        in ``hyper``'s dtype."""
        norms = hyper.norm(dim=-1, keepdim=True)
        unit = torch.where(norms > 0, hyper / torch.where(norms > 0, norms, 1.0), 0.0)
        weights = min_norm_weights(gram64(unit, active), active).to(unit.dtype)
        return torch.einsum("ki,kit->kt", weights, unit)
