"""Auto-λ: task weights meta-learned on validation data (Liu, James, Davison & Johns, TMLR 2022)."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor

from mtl_core.components import searched
from mtl_core.optim import StackedOptimizer
from mtl_core.weighting._base import LossWeighting, StepInputs, StrategyConfig, normalise
from mtl_core.weighting._look_ahead import (
    LookAhead,
    flat,
    grads_of,
    leaves,
    moved,
    require_look_ahead,
)
from mtl_core.weighting._registry import STRATEGIES

#: The finite-difference radius, relative to the validation gradient's norm (the paper's 0.01).
_FD_RADIUS = 0.01


class AutoLambdaConfig(StrategyConfig):
    """Auto-λ's hyper-parameters.

    Args:
        primary: the tasks whose validation loss the weights are learned to lower (the
            paper's "primary tasks"); empty: every task (its "all tasks" setting).
        init: every λ_t's initial value (the authors' code: 0.1).
        lr: the step size of λ (Adam; the authors' code: 1e-4).
        hypergradient: ``finite_difference`` (the paper's approximation: two extra forward
            passes) or ``exact`` (autograd through the look-ahead step: a second-order
            backward, slower, for checking the approximation).
    """

    primary: list[str] = Field(
        default_factory=list,
        description="Tasks whose validation loss the weights serve (empty: all tasks).",
    )
    init: float = Field(0.1, gt=0, description="Initial value of every task weight.")
    lr: float = Field(
        1e-4,
        gt=0,
        description="Step size of the task weights (Adam).",
        json_schema_extra=searched(1e-5, 1e-2, log=True),
    )
    hypergradient: Literal["finite_difference", "exact"] = Field(
        "finite_difference", description="How the weights' gradient is computed."
    )


@STRATEGIES.register("auto_lambda")
class AutoLambda(LossWeighting[AutoLambdaConfig]):
    """Learn the task weights λ that make one training step best for the primary tasks'
    *validation* loss.

    Liu, James, Davison & Johns, "Auto-Lambda: Disentangling Dynamic Task Relationships",
    TMLR 2022. At every step, before the model's update, with the step's training batch, a
    validation batch and the trial's optimizer settings (`LookAhead.virtual_step`):

        θ' = θ − α (m + ∇_θ Σ_t λ_t s_t L_t(θ) + wd θ)            (look-ahead step)
        ∇_λ L_val(θ') = −α ∇²_{λ,θ} L_train · ∇_θ' L_val(θ')
                      ≈ −α (s_t L_t(θ⁺) − s_t L_t(θ⁻)) / 2ε       (finite difference)
        θ^± = θ ± ε d,   d = ∇_θ' Σ_{p ∈ primary} L^val_p(θ'),   ε = 0.01 / ‖d‖

    and λ takes one Adam step on that gradient; the model's step then back-propagates
    Σ_t λ_t s_t L_t with the new λ (s_t: the study's fixed weight times the schedule's
    multiplier). With ``hypergradient: exact`` autograd differentiates through θ' instead
    (the same quantity without the approximation). λ is used as it is, unconstrained, as in
    the authors' code. The validation batch comes from the experiment's validation split
    (the paper's and LibMTL's code take a second batch of the training set): a study that
    selects trials on validation metrics after meta-learning on the same split is optimistic,
    which is why the test metrics stay untouched (docs/strategies.md).

    Cost per step: two forward and backward passes more than a fixed-weight step (the
    look-ahead gradient and the validation gradient) and two forward passes (θ^±).
    Reported weights: λ normalised to Σ = T over the active tasks.
    """

    name = "auto_lambda"
    config_cls = AutoLambdaConfig
    reads_validation: ClassVar[bool] = True
    task_name_fields: ClassVar[tuple[str, ...]] = ("primary",)

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        super().__init__(num_slots, num_tasks, device)
        self.lambdas = self._zeros()
        self.primary = self._zeros()  # 1 where the task's validation loss counts
        # λ has its own Adam, as in the paper (not the trials' optimizer).
        self._optimizer = StackedOptimizer(
            "adam", [self.lambdas], lr=self._per_slot(1e-4), weight_decay=self._per_slot(0.0)
        )
        self.exact_slots: set[int] = set()

    def _reset(self, slot: int, config: AutoLambdaConfig) -> None:
        ctx = self.contexts[slot]
        assert ctx is not None  # set by reset_slot before _reset
        names = config.primary or list(ctx.task_names)
        self.primary[slot] = 0
        for name in names:
            self.primary[slot, ctx.task_index(name)] = 1
        self.lambdas[slot] = config.init
        self._optimizer.reset_slot(slot, config.lr, 0.0)
        self.exact_slots.discard(slot)
        if config.hypergradient == "exact":
            self.exact_slots.add(slot)

    def release_slot(self, slot: int) -> None:
        super().release_slot(slot)
        self.exact_slots.discard(slot)

    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        look = require_look_ahead(inputs.look_ahead, self.name)
        hyper = self._finite_difference(inputs, look)
        if self.exact_slots:
            exact = torch.zeros(self.num_slots, dtype=torch.bool, device=self.device)
            exact[sorted(self.exact_slots)] = True
            hyper = torch.where(exact.unsqueeze(-1), self._exact(inputs, look), hyper)
        occupied = inputs.occupied
        hyper = torch.where(occupied.unsqueeze(-1), hyper, torch.zeros_like(hyper))
        self._optimizer.step([hyper], occupied)
        lambdas = self.lambdas.to(inputs.losses.dtype)
        objective = (lambdas * inputs.scale * inputs.losses).sum(dim=-1)
        return objective, normalise(self.lambdas, inputs.scale > 0)

    def _validation_gradient(self, theta: list[Tensor], look: LookAhead) -> list[Tensor]:
        """∇ of the primary tasks' validation loss at ``theta`` (leaves)."""
        primary = (look.val_losses(theta).float() * self.primary).sum()
        return grads_of(primary, theta)

    def _finite_difference(self, inputs: StepInputs, look: LookAhead) -> Tensor:
        """``[K, T]`` ∇_λ L_val(θ') by the paper's central difference."""
        lambdas = self.lambdas.detach().to(inputs.losses.dtype)
        train = (lambdas * inputs.scale * inputs.losses).sum()
        ahead = leaves(look.virtual_step(look.gradients(train, False)))
        direction = self._validation_gradient(ahead, look)
        norm = flat(direction).float().norm(dim=1)
        usable = norm > 0
        eps = torch.where(usable, _FD_RADIUS / torch.where(usable, norm, 1.0), 0.0)
        with torch.no_grad():
            plus = look.train_losses(moved(look.params, direction, eps)).float()
            minus = look.train_losses(moved(look.params, direction, -eps)).float()
        scale = inputs.scale.float()
        safe = torch.where(usable, 2 * eps, 1.0).unsqueeze(-1)
        second = torch.where(usable.unsqueeze(-1), scale * (plus - minus) / safe, 0.0)
        return -look.lr.unsqueeze(-1) * second

    def _exact(self, inputs: StepInputs, look: LookAhead) -> Tensor:
        """``[K, T]`` ∇_λ L_val(θ') by autograd through the look-ahead step."""
        lambdas = self.lambdas.detach().clone().requires_grad_(True)
        train = (lambdas.to(inputs.losses.dtype) * inputs.scale * inputs.losses).sum()
        ahead = look.virtual_step(look.gradients(train, True))
        primary = (look.val_losses(ahead).float() * self.primary).sum()
        return grads_of(primary, [lambdas])[0]
