"""DSelect-k: shared experts mixed per task by a differentiable k-sparse gate."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch
from pydantic import Field, ValidationInfo, field_validator
from torch import Tensor, nn

from mtl_core.architectures._base import (
    Architecture,
    ArchitectureConfig,
    ModelOutput,
    MultiTaskModel,
    NetworkParts,
    split_blocks,
)
from mtl_core.architectures._gates import mix
from mtl_core.architectures._registry import ARCHITECTURES
from mtl_core.architectures.hard import fresh_block_lists, last_block_parameters

logger = logging.getLogger(__name__)

#: Keeps log(r) and 1/Σr finite (the reference implementation's constant).
EPSILON = 1e-6


def smooth_step(t: Tensor, gamma: float) -> Tensor:
    """S_γ(t): 0 for t ≤ −γ/2, 1 for t ≥ γ/2, −2/γ³·t³ + 3/(2γ)·t + 1/2 in between.

    The cubic meets 0 and 1 with zero slope at ±γ/2, so S_γ is continuously
    differentiable; outside the cubic region it is exactly 0 or 1 (a selector can be
    exactly one-hot), chosen element-wise by `torch.where`, not by Python branches.
    """
    cubic = -2 / gamma**3 * t**3 + 3 / (2 * gamma) * t + 0.5
    below, above = t <= -gamma / 2, t >= gamma / 2
    return torch.where(below, torch.zeros_like(t), torch.where(above, torch.ones_like(t), cubic))


def binary_codes(num_experts: int, device: torch.device | None = None) -> Tensor:
    """``[E, m]`` booleans, row e holding the m = ceil(log2 E) bits of e (bit j: e >> j & 1)."""
    experts = torch.arange(num_experts, device=device).unsqueeze(1)
    shifts = torch.arange(code_bits(num_experts), device=device)
    return ((experts >> shifts) & 1).bool()


def code_bits(num_experts: int) -> int:
    """m = ceil(log2 E), at least 1: the bits of a selector's binary code."""
    return max(1, (num_experts - 1).bit_length())


class DSelectKConfig(ArchitectureConfig):
    """Hyper-parameters of `DSelectK`.

    Args:
        num_experts: E, the expert trunks the tasks share.
        k: selectors per gate: each example mixes at most k experts once they converge.
        gamma: γ > 0, the width of the smooth-step's cubic region.
        z_init: the selector logits' weights and biases start uniform in ±z_init·γ (the
            reference code's γ/100), inside the cubic region where they have gradients.
        entropy_weight: λ ≥ 0 of the selectors' entropy penalty (the paper's optional
            regulariser, which speeds the selectors' convergence to one-hot); 0 turns it off.
    """

    num_experts: int = Field(4, ge=2, le=64)
    k: int = Field(2, ge=1, le=64)
    gamma: float = Field(1.0, gt=0, allow_inf_nan=False)
    z_init: float = Field(0.01, ge=0, le=0.5, allow_inf_nan=False)
    entropy_weight: float = Field(0.0, ge=0, allow_inf_nan=False)

    @field_validator("k")
    @classmethod
    def _k_at_most_num_experts(cls, k: int, info: ValidationInfo) -> int:
        experts = info.data.get("num_experts")
        if experts is not None and k > experts:
            raise ValueError(f"must be at most num_experts ({experts})")
        return k


class DSelectKGate(nn.Module):
    """A per-example DSelect-k gate over E experts, reading the flattened input.

    Selector i has logits z_i = W_i·x (m = ceil(log2 E) of them) and puts
    r_i(e) = Π_j (S_γ(z_ij) if bit j of e is 1 else 1 − S_γ(z_ij)) on expert e; the gate is
    g(x) = Σ_i softmax(α(x))_i · r_i(x), α a Linear with k outputs.

    Args:
        input_dim: width of the flattened input.
        num_experts: E.
        k: number of selectors.
        gamma: γ of the smooth-step.
        z_init: z's weights and biases start uniform in ±z_init·γ.
    """

    def __init__(
        self, input_dim: int, num_experts: int, k: int, gamma: float, z_init: float
    ) -> None:
        super().__init__()
        if not 1 <= k <= num_experts:
            raise ValueError(f"k must be in 1..num_experts, got {k=}, {num_experts=}")
        if gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma=}")
        self.num_experts, self.k, self.gamma = num_experts, k, gamma
        self.bits = code_bits(num_experts)
        self.z = nn.Linear(input_dim, k * self.bits)
        self.alpha = nn.Linear(input_dim, k)
        nn.init.uniform_(self.z.weight, -z_init * gamma, z_init * gamma)
        nn.init.uniform_(self.z.bias, -z_init * gamma, z_init * gamma)

    def selectors(self, flat: Tensor) -> Tensor:
        """``[B, k, E]``: r_i(e) per example. Codes ≥ E are left out (the reference code's
        way), so a row sums to 1 only once its mass is on reachable experts."""
        z = self.z(flat).reshape(-1, self.k, 1, self.bits)
        step = smooth_step(z, self.gamma)  # [B, k, 1, m]
        codes = binary_codes(self.num_experts, flat.device)  # [E, m]
        return torch.where(codes, step, 1 - step).prod(dim=-1)

    def forward(self, flat: Tensor) -> tuple[Tensor, Tensor]:
        """(g(x) ``[B, E]``, the selectors r ``[B, k, E]``) for the flattened input."""
        r = self.selectors(flat)
        mixing = torch.softmax(self.alpha(flat), dim=-1)  # [B, k]
        return (mixing.unsqueeze(-1) * r).sum(dim=1), r


class _SelectorTrace:
    """The selectors of the last training forward, for `DSelectKModel.regularization`.

    A fresh, empty trace on copy: a traced tensor belongs to one forward's graph.
    """

    def __init__(self) -> None:
        self.selectors: list[Tensor] = []

    def __deepcopy__(self, memo: dict[int, Any]) -> _SelectorTrace:
        return _SelectorTrace()


def selector_penalty(selectors: Tensor, entropy_weight: float, power_of_two: bool) -> Tensor:
    """The gate's regulariser on selectors ``[B, k, E]``, summed over selectors, mean over B.

    λ · H(r_i) (entropy, −Σ_e r log(r + ε)) pushes each selector towards one-hot. When E is
    not a power of 2, 1/Σ_e r_i(e) − 1 (≥ 0, 0 once all the mass is on reachable experts)
    keeps the selectors off the unreachable codes, as the reference code does.
    """
    penalty = selectors.new_zeros(selectors.shape[:2])
    if entropy_weight > 0:
        penalty = penalty + entropy_weight * -(selectors * torch.log(selectors + EPSILON)).sum(-1)
    if not power_of_two:
        # Rounding can put the reachable mass a hair above 1; the term must stay >= 0.
        penalty = penalty + (1 / selectors.sum(-1).clamp_min(EPSILON) - 1).clamp_min(0)
    return penalty.sum(dim=1).mean()


class DSelectKModel(MultiTaskModel):
    """Experts (full trunks) shared by all tasks, mixed per task by a DSelect-k gate.

    Args:
        experts: the expert trunks, each input → representation.
        gates: one `DSelectKGate` per task, read on the flattened input.
        heads: one head per task.
        entropy_weight: λ of the selectors' entropy penalty.
    """

    def __init__(
        self,
        experts: list[nn.Sequential],
        gates: list[DSelectKGate],
        heads: list[nn.Module],
        entropy_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if len(experts) < 2:
            raise ValueError(f"DSelect-k needs at least two experts, got {len(experts)}")
        if len(gates) != len(heads):
            raise ValueError(f"need one gate per head, got {len(gates)=} and {len(heads)=}")
        if any(gate.num_experts != len(experts) for gate in gates):
            raise ValueError(f"every gate must select among the {len(experts)} experts")
        if entropy_weight < 0:
            raise ValueError(f"entropy_weight must be >= 0, got {entropy_weight=}")
        self.experts = nn.ModuleList(experts)
        self.gates = nn.ModuleList(gates)
        self.heads = nn.ModuleList(heads)
        self.entropy_weight = entropy_weight
        self.power_of_two = len(experts) & (len(experts) - 1) == 0
        self._trace = _SelectorTrace()

    def gate_weights(self, x: Tensor) -> Tensor:
        """The ``[T, B, E]`` mixture weights of each task's gate."""
        flat = x.flatten(1)
        return torch.stack([gate(flat)[0] for gate in self.gates])

    def forward(self, x: Tensor) -> ModelOutput:
        expert_out = [expert(x) for expert in self.experts]
        flat = x.flatten(1)
        outputs, selectors = [], []
        # One gate at a time, so that task t's loss has no graph edge into another's gate.
        for gate, head in zip(self.gates, self.heads, strict=True):
            weights, r = gate(flat)
            outputs.append(head(mix(weights, expert_out)))
            selectors.append(r)
        regularized = self.entropy_weight > 0 or not self.power_of_two
        # The penalty is a training loss (as in the paper); evaluation leaves no trace.
        self._trace.selectors = selectors if self.training and regularized else []
        return ModelOutput(outputs=outputs, representation=None)

    def regularization(self) -> Tensor:
        """The selectors' penalty (`selector_penalty`) of the last training forward, summed
        over tasks; zero without one. It is read once: the trace is cleared."""
        selectors, self._trace.selectors = self._trace.selectors, []
        if not selectors:
            return super().regularization()
        penalties = [selector_penalty(r, self.entropy_weight, self.power_of_two) for r in selectors]
        return torch.stack(penalties).sum()

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.experts.parameters())

    def last_shared_parameters(self) -> list[nn.Parameter]:
        return last_block_parameters(self.experts)


@ARCHITECTURES.register("dselect_k")
class DSelectK(Architecture):
    """DSelect-k (Hazimeh, Zhao, Chowdhery, Sathiamoorthy, Chen, Mazumder, Hong, Chi,
    NeurIPS 2021, "DSelect-k: Differentiable Selection in the Mixture of Experts with
    Applications to Multi-Task Learning").

    As `MMoE`, ``num_experts`` experts (fresh ``make_blocks()`` chains) are shared by every
    task, but task t mixes them with a per-example `DSelectKGate` on the flattened input:
    k single-expert selectors, each a smooth binary code of m = ceil(log2 E) bits, combined
    by softmax(α(x)), so once the smooth-steps saturate each example mixes at most k
    experts. When E is not a power of 2, codes ≥ E are left out and a penalty
    1/Σ_e r_i(e) − 1 keeps the selectors on reachable experts (the reference code's way):
    the gate's weights sum to the reachable mass, 1 once it has converged. The optional
    entropy penalty (``entropy_weight``) goes through `regularization()` too; both are
    averaged over the batch's examples and summed over selectors and tasks.

    Shared parameters are the experts'; gates and heads are task parameters;
    ``last_shared_parameters()`` the last parameterised block of every expert. Needs only
    ``NetworkParts.input_dim``. The representation is per task (None).

    Args:
        config: a `DSelectKConfig`.
    """

    name: ClassVar[str] = "dselect_k"
    config_cls: ClassVar[type[ArchitectureConfig]] = DSelectKConfig

    def build(self, parts: NetworkParts) -> MultiTaskModel:
        assert isinstance(self.config, DSelectKConfig)
        config = self.config
        experts = [split_blocks(b) for b in fresh_block_lists(parts, config.num_experts)]
        gates = [
            DSelectKGate(parts.input_dim, config.num_experts, config.k, config.gamma, config.z_init)
            for _ in range(parts.num_tasks)
        ]
        heads = [parts.make_head(t) for t in range(parts.num_tasks)]
        logger.debug(
            "dselect_k: %d experts, k=%d, %d tasks", config.num_experts, config.k, parts.num_tasks
        )
        return DSelectKModel(experts, gates, heads, config.entropy_weight)
