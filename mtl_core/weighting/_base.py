"""The weighting-strategy contract, written once over a leading trial dimension K.

A strategy holds K *slots*, one trial each (K = 1 when a trial trains alone); its per-trial
state is ``[K, T]`` tensors and its per-trial hyper-parameters ``[K]`` tensors, set by
`WeightingStrategy.reset_slot` from the trial's typed config. Two kinds, after torchjd's
split of a *weighting* (what to combine) from the autograd plumbing (`_autograd`):

* `LossWeighting`: ``objective(inputs)`` maps the ``[K, T]`` task losses to a ``[K]``
  objective with graph; its gradient, summed over trials, is each trial's update (trials
  share no parameter, so one backward of the sum serves all K).
* `GradientWeighting`: ``combine(grads, inputs)`` maps the per-trial task gradients on the
  shared parameters ``[K, T, P]`` to the combined ``[K, P]``; linear methods (MGDA, CAGrad)
  give their coefficients instead. In the ``representation`` space (MGDA-UB, GradDrop) the
  same ``combine`` receives the task gradients w.r.t. the shared representation instead.

Conventions every strategy keeps (tests check them):

* ``scale`` is ``[K, T]``, detached, >= 0: the study's fixed weights times the schedule's
  multiplier. A task with ``scale == 0`` is inactive this step: it adds no gradient anywhere.
* Loss-based strategies back-propagate ``Σ_t λ_t · scale_t · L_t`` (+ their own regulariser).
* Gradient methods combine the gradients of ``scale_t · L_t`` on the *shared* parameters;
  every task-specific parameter receives its own task's gradient of ``scale_t · L_t`` (of
  ``GradientWeighting.task_objectives`` where a method rescales its losses, as IMTL does).
* The returned weights are ``[K, T]``, detached, normalised so that Σ_t λ_t = T over the
  active tasks (0 for inactive ones), so strategies compare.
* Random draws come from each trial's own generator (``TaskContext.generator``), once per
  step, only for occupied slots: a trial draws the same numbers whatever K it trains in.
* Learnable state (uncertainty's s, GradNorm's w) is ``[K, T]`` leaf tensors returned by
  `parameters()`; the trainer adds them to the trials' optimizer.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Generic, Literal, TypeVar, cast

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor

from mtl_core.context import TaskContext

if TYPE_CHECKING:
    from mtl_core.weighting._look_ahead import LookAhead

#: Where a strategy works: on the losses, on the shared parameters' task gradients, or on the
#: task gradients w.r.t. the shared representation (MGDA-UB, GradDrop).
GradientSpace = Literal["loss", "parameters", "representation"]


class StrategyConfig(BaseModel):
    """Base of every strategy's typed hyper-parameters; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


ConfigT = TypeVar("ConfigT", bound=StrategyConfig)


@dataclass
class StepInputs:
    """What a strategy sees at one step.

    Args:
        losses: ``[K, T]`` task losses with graph.
        scale: ``[K, T]`` detached, fixed weights × schedule multipliers (0 = inactive).
        last_shared: the last shared layer's parameters (GradNorm's W), leading dim K.
        occupied: ``[K]`` bool, slots holding a live trial (free slots must not change).
        extra_losses: for a strategy with `WeightingStrategy.batches_per_step` = n > 1, the
            ``[K, T]`` losses (with graph) of the step's other n - 1 independent batches;
            ``losses`` is the batch the update is computed on.
        extra_grads: their ``[K, T, P]`` task gradients (of `GradientWeighting.task_objectives`),
            filled by `strategy_gradients` before `GradientWeighting.combine`.
        look_ahead: for a strategy with `WeightingStrategy.reads_validation`, the model as a
            function of its parameters on this step's training and validation batches.
    """

    losses: Tensor
    scale: Tensor
    last_shared: Sequence[Tensor]
    occupied: Tensor
    extra_losses: tuple[Tensor, ...] = field(default=())
    extra_grads: tuple[Tensor, ...] = field(default=())
    look_ahead: LookAhead | None = None


def masked_softmax(logits: Tensor, active: Tensor) -> Tensor:
    """Row-wise softmax over the active entries (inactive ones, and empty rows, get 0)."""
    masked = torch.where(active, logits, torch.full_like(logits, float("-inf")))
    return torch.nan_to_num(torch.softmax(masked, dim=-1), nan=0.0)


def normalise(weights: Tensor, active: Tensor) -> Tensor:
    """Row-wise: Σ = number of active tasks, 0 elsewhere; a row with total <= 0 gets 1s.

    Scales by the row's largest weight and divides before multiplying by the task count, so
    weights near the float maximum do not overflow; a row holding a NaN or infinite weight
    comes back NaN. No host sync (safe on a GPU).
    """
    weights = torch.where(active, weights.detach(), torch.zeros_like(weights))
    # Relative to the row's largest weight first, so a sum of huge weights cannot overflow.
    largest = weights.amax(dim=-1, keepdim=True)
    usable = torch.isfinite(largest) & (largest > 0)
    weights = weights / torch.where(usable, largest, torch.ones_like(largest))
    total = weights.sum(dim=-1, keepdim=True)
    positive = usable & (total > 0)
    safe_total = torch.where(positive, total, torch.ones_like(total))
    scaled = weights / safe_total * active.sum(dim=-1, keepdim=True).to(weights.dtype)
    normalised = torch.where(positive, scaled, active.to(weights.dtype))
    # A non-finite weight is a diverged step: keep it visible (the trainer stops that trial).
    return torch.where(torch.isfinite(largest), normalised, torch.full_like(normalised, torch.nan))


def one_active_task_as_is(combined: Tensor, grads: Tensor, active: Tensor) -> Tensor:
    """``combined [K, P]``, except where one task is active: its gradient, as is.

    The project's convention for a method whose combination would rescale a lone task's
    gradient (``grads [K, T, P]`` has zero rows for the inactive tasks).
    """
    single = (active.sum(dim=-1) == 1).unsqueeze(-1)
    return torch.where(single, grads.sum(dim=1), combined)


def one_active_task_unit(coefficients: Tensor, active: Tensor) -> Tensor:
    """``coefficients [K, T]``, except where one task is active: 1 on it (its gradient as is).

    The same convention as `one_active_task_as_is`, for the linear methods' coefficients.
    """
    single = active.sum(dim=-1, keepdim=True) == 1
    return torch.where(single, active.to(coefficients.dtype), coefficients)


def to_device(host: Tensor, device: torch.device) -> Tensor:
    """Copy a small CPU tensor to ``device`` without making the host wait for the GPU."""
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


class WeightingStrategy(abc.ABC, Generic[ConfigT]):
    """Base class: one subclass per strategy module, registered in `STRATEGIES`.

    Args:
        num_slots: K, the trials trained together (1 for a trial alone).
        num_tasks: T.
        device: where the per-slot state lives.
    """

    name: ClassVar[str]
    config_cls: ClassVar[type[StrategyConfig]] = StrategyConfig
    #: True for methods that combine per-task gradients (`GradientWeighting`).
    uses_task_gradients: ClassVar[bool] = False
    #: True for methods that read the shared parameters (their gradients, or GradNorm's W):
    #: they cannot train on an architecture that shares none.
    needs_shared_parameters: ClassVar[bool] = False
    #: Epochs at whose end the strategy has not yet acted as itself (e.g. DWA is uniform by
    #: definition for two): a search must not judge a trial by them.
    warmup_epochs: ClassVar[int] = 0
    #: True where one active task gets its own gradient of scale_t · L_t as is; False for
    #: methods that change its size (log-loss methods give ∇L_t / L_t): their step is then
    #: a positive multiple of that gradient.
    single_task_as_is: ClassVar[bool] = True
    #: Independent training batches one step reads (MoDo, SDMGrad: 3). The trainer then
    #: makes a step of n batches (an epoch has n times fewer steps) and hands the extra
    #: ones over in `StepInputs.extra_losses` / `StepInputs.extra_grads`.
    batches_per_step: ClassVar[int] = 1
    #: True for meta-learned strategies (Auto-λ, MOML, FORUM): the trainer draws a batch of
    #: the validation split for each of their steps from the trial's generator and hands them
    #: a `LookAhead` in `StepInputs.look_ahead`.
    reads_validation: ClassVar[bool] = False
    #: Config fields that hold task names (Auto-λ's ``primary``): a study checks them against
    #: its experiment's tasks at submission.
    task_name_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, num_slots: int, num_tasks: int, device: torch.device) -> None:
        self.num_slots = num_slots
        self.num_tasks = num_tasks
        self.device = device
        self.contexts: list[TaskContext | None] = [None] * num_slots

    @classmethod
    def gradient_space(cls, config: StrategyConfig) -> GradientSpace:
        """What the strategy works on for ``config`` (trials batch only with their kind)."""
        return "parameters" if cls.uses_task_gradients else "loss"

    def _zeros(self, dtype: torch.dtype = torch.float32) -> Tensor:
        return torch.zeros(self.num_slots, self.num_tasks, device=self.device, dtype=dtype)

    def _per_slot(self, value: float, dtype: torch.dtype = torch.float32) -> Tensor:
        return torch.full((self.num_slots,), value, device=self.device, dtype=dtype)

    def reset_slot(self, slot: int, config: StrategyConfig, ctx: TaskContext) -> None:
        """Put a new trial (its typed config and context) in ``slot``; its state restarts."""
        if not isinstance(config, self.config_cls):
            raise TypeError(f"strategy {self.name!r} takes a {self.config_cls.__name__}")
        self.contexts[slot] = ctx
        self._reset(slot, cast(ConfigT, config))

    def _reset(self, slot: int, config: ConfigT) -> None:
        """Set ``slot``'s hyper-parameters from ``config`` and zero its state."""

    def release_slot(self, slot: int) -> None:
        """The trial in ``slot`` left; the slot draws nothing until it is reset."""
        self.contexts[slot] = None

    def parameters(self) -> list[Tensor]:
        """Learnable ``[K, ...]`` leaf tensors, trained by the trials' optimizer."""
        return []

    def on_epoch_end(self, ended: Tensor, mean_losses: Tensor) -> None:
        """``ended``: ``[K]`` bool, slots that finished an epoch; ``mean_losses``: ``[K, T]``
        epoch-mean *unscaled* training losses."""


class LossWeighting(WeightingStrategy[ConfigT]):
    """A strategy that forms the objective from the losses alone."""

    @abc.abstractmethod
    def objective(self, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        """(``[K]`` objective with graph, ``[K, T]`` weights)."""


class GradientWeighting(WeightingStrategy[ConfigT]):
    """A strategy that combines the per-task gradients on the shared parameters."""

    uses_task_gradients = True
    needs_shared_parameters = True

    def task_objectives(self, inputs: StepInputs) -> Tensor:
        """``[K, T]`` per-task objectives, with graph, whose gradients are combined (on the
        shared parameters or representation) and given to each task's own parameters.

        The default is ``scale_t · L_t``; a method that rescales its losses first (IMTL's
        learnable scales) says so here.
        """
        return inputs.losses * inputs.scale

    def parameter_objective(self, inputs: StepInputs) -> Tensor | None:
        """``[K]`` objective whose gradient trains `parameters()` (None: the method has none)."""
        return None

    def combine(self, grads: Tensor, inputs: StepInputs) -> tuple[Tensor, Tensor]:
        """``[K, T, P]`` task gradients → (combined ``[K, P]``, weights ``[K, T]``).

        The default is the linear combination with `coefficients`.
        """
        coeff = self.coefficients(grads, inputs)
        combined = torch.einsum("kt,ktp->kp", coeff, grads)
        return combined, normalise(coeff, inputs.scale > 0)

    def coefficients(self, grads: Tensor, inputs: StepInputs) -> Tensor:
        """``[K, T]`` coefficients of the update on the rows of ``grads`` (linear methods)."""
        raise NotImplementedError(f"strategy {self.name!r} is not a linear combination")
