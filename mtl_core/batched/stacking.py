"""K models of one architecture as stacked tensors, run with one vmapped functional call.

`stack_models` turns K `MultiTaskModel` instances (same architecture, different seeds) into
dicts of parameters and buffers whose tensors have a leading dimension K
(`torch.func.stack_module_state`), plus a `StackSpec` that remembers which parameters are
shared, task-specific and last-shared. `StackedForward` runs the K models on one batch in one
`torch.func.vmap` of `torch.func.functional_call` over a parameter-less (meta) copy of the
first model, so every layer becomes one batched kernel instead of K small ones.

BatchNorm: its running statistics are buffers. Stacked per trial and passed in with
``in_dims=0``, the in-place update BatchNorm does in training mode (``running_mean.mul_()
.add_()``, ``num_batches_tracked.add_(1)``) writes into each trial's own row of the stacked
buffer under vmap, which is exactly what K separate models would do; evaluation reads them the
same way. (An *unbatched* buffer with a batched input is what fails under vmap; stacking avoids
that case instead of dropping the statistics.)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from mtl_core.architectures import MultiTaskModel

Params = dict[str, Tensor]


@dataclass(frozen=True)
class StackSpec:
    """Names of the stacked tensors and how the strategies see them.

    Args:
        param_names: every parameter, in ``named_parameters()`` order.
        buffer_names: every buffer, in ``named_buffers()`` order.
        shared: parameters every task reaches (gradient methods combine their gradients).
        task_specific: the other parameters.
        last_shared: GradNorm's W (the last shared layer).
    """

    param_names: tuple[str, ...]
    buffer_names: tuple[str, ...]
    shared: tuple[str, ...]
    task_specific: tuple[str, ...]
    last_shared: tuple[str, ...]


def _names_of(model: nn.Module, params: Sequence[nn.Parameter]) -> tuple[str, ...]:
    wanted = {id(p) for p in params}
    return tuple(name for name, p in model.named_parameters() if id(p) in wanted)


def model_spec(model: MultiTaskModel) -> StackSpec:
    """The `StackSpec` of one model (all K models of a batch have the same)."""
    return StackSpec(
        param_names=tuple(name for name, _ in model.named_parameters()),
        buffer_names=tuple(name for name, _ in model.named_buffers()),
        shared=_names_of(model, model.shared_parameters()),
        task_specific=_names_of(model, model.task_parameters()),
        last_shared=_names_of(model, model.last_shared_parameters()),
    )


def stack_models(models: Sequence[MultiTaskModel]) -> tuple[Params, Params, StackSpec]:
    """Stack K models' parameters and buffers into tensors of leading dim K.

    Returns:
        (parameters, buffers, spec); parameters are leaf tensors that require grad.
    """
    if not models:
        raise ValueError("need at least one model to stack, got 0")
    spec = model_spec(models[0])
    for model in models[1:]:
        other = model_spec(model)
        if other.param_names != spec.param_names or other.buffer_names != spec.buffer_names:
            raise ValueError("models to stack must have the same structure")
    params, buffers = stack_module_state(list(models))
    params = {name: params[name].detach().requires_grad_(True) for name in spec.param_names}
    buffers = {name: buffers[name].detach().clone() for name in spec.buffer_names}
    return params, buffers, spec


def model_state(model: nn.Module) -> tuple[Params, Params]:
    """One model's parameters and buffers (detached copies), e.g. to refill a slot."""
    params = {name: p.detach().clone() for name, p in model.named_parameters()}
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    return params, buffers


class FunctionalModel(nn.Module):
    """Wraps a `MultiTaskModel` so one functional call returns outputs *and* regularization.

    The wrapper registers the model's children under their own names (so parameter names
    are unchanged) and keeps the model itself unregistered; ``regularization()`` then runs
    inside the same `functional_call` as the forward pass and sees the trial's tensors
    (soft sharing's pull between columns).
    """

    model: MultiTaskModel

    def __init__(self, model: MultiTaskModel) -> None:
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        object.__setattr__(self, "model", model)
        own = {name for name, _ in self.named_parameters()} | {n for n, _ in self.named_buffers()}
        expected = {name for name, _ in model.named_parameters()}
        expected |= {name for name, _ in model.named_buffers()}
        if own != expected:
            raise ValueError("models with parameters outside their submodules cannot be batched")

    def train(self, mode: bool = True) -> FunctionalModel:
        super().train(mode)
        self.model.training = mode
        return self

    def forward(self, x: Tensor) -> tuple[tuple[Tensor, ...], Tensor | None, Tensor]:
        model = self.model
        out = model(x)
        return tuple(out.outputs), out.representation, model.regularization()


def meta_template(model: MultiTaskModel) -> FunctionalModel:
    """A storage-less copy of ``model`` wrapped for functional calls (tensors come in)."""
    return FunctionalModel(copy.deepcopy(model).to("meta"))


class StackedForward:
    """Runs K stacked models with one vmapped functional call.

    Args:
        template: a `meta_template` of one of the models: structure only.
        per_trial: ``fn(outputs, representation, regularization, *extra) -> result`` applied
            inside the vmap to each trial (e.g. its task losses), so reductions are batched.
    """

    def __init__(
        self,
        template: FunctionalModel,
        per_trial: Callable[..., Any] | None = None,
    ) -> None:
        self.template = template
        self.per_trial = per_trial

    def _set_mode(self, training: bool) -> None:
        # Walking the modules every step costs as much as a small layer's forward.
        if training != self.template.training:
            self.template.train(training)

    def _one(self, params: Params, buffers: Params, x: Tensor, *extra: Any) -> Any:
        outputs, representation, reg = functional_call(self.template, (params, buffers), (x,))
        if self.per_trial is not None:
            return self.per_trial(outputs, representation, reg, *extra)
        return outputs

    def __call__(
        self,
        params: Params,
        buffers: Params,
        x: Tensor,
        *extra: Any,
        x_batched: bool = False,
        extra_batched: bool = False,
        training: bool = True,
    ) -> Any:
        """Run every trial on ``x`` (shared ``[B, ...]``, or ``[K, B, ...]`` if batched)."""
        self._set_mode(training)
        return self._run(params, buffers, x, extra, x_batched, extra_batched)

    def _run(
        self,
        params: Params,
        buffers: Params,
        x: Tensor,
        extra: tuple[Any, ...],
        x_batched: bool,
        extra_batched: bool,
    ) -> Any:
        in_dims = (0, 0, 0 if x_batched else None, *((0 if extra_batched else None),) * len(extra))
        return vmap(self._one, in_dims=in_dims, randomness="different")(params, buffers, x, *extra)


class DirectForward(StackedForward):
    """K = 1: the model called directly, no vmap nor functional call.

    ``template`` wraps the *real* model (`FunctionalModel`), whose own tensors are the
    storage that the [1, ...] stacked tensors view (`unsqueezed_state`), so the arguments
    ``params`` and ``buffers`` are not needed; outputs get the leading dimension 1.
    """

    def _run(
        self,
        params: Params,
        buffers: Params,
        x: Tensor,
        extra: tuple[Any, ...],
        x_batched: bool,
        extra_batched: bool,
    ) -> Any:
        if x_batched:
            x = x[0]
        if extra_batched:
            extra = tuple(e[0] for e in extra)
        outputs, representation, reg = self.template(x)
        if self.per_trial is None:
            return _unsqueeze(outputs)
        result = self.per_trial(outputs, representation, reg, *extra)
        # A representation passed through (MGDA-UB) stays the tensor the losses were computed
        # from: gradients w.r.t. an unsqueezed view of it would be zero.
        return (*_unsqueeze(result[:2]), *result[2:])


def unsqueezed_state(model: nn.Module) -> tuple[Params, Params]:
    """One model's parameters and buffers as [1, ...] views (writes reach the model)."""
    params = {name: p.unsqueeze(0) for name, p in model.named_parameters()}
    buffers = {name: b.unsqueeze(0) for name, b in model.named_buffers()}
    return params, buffers


def _unsqueeze(values: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """A trial's outputs with the leading trial dimension K = 1."""
    return tuple(t.unsqueeze(0) for t in values)


def write_slot(stacked: Params, index: int, single: Params) -> None:
    """Copy one trial's tensors into row ``index`` of the stacked tensors (refill a slot)."""
    with torch.no_grad():
        for name, tensor in stacked.items():
            tensor[index].copy_(single[name])


@dataclass
class StackedTrials:
    """The tensors of a batch's K models as its step uses them.

    Args:
        params: parameters of leading dim K.
        buffers: buffers of leading dim K.
        spec: names of the tensors (`StackSpec`).
        targets: the tensors gradients are taken with respect to.
        template: the structure the forward calls.
    """

    params: Params
    buffers: Params
    spec: StackSpec
    targets: Params
    template: FunctionalModel


def stack_trials(models: Sequence[MultiTaskModel]) -> StackedTrials:
    """The `StackedTrials` of K models (K = 1 included)."""
    if len(models) == 1:
        # Alone: the model's own tensors are the storage and the stacked [1, ...] tensors are
        # views of them; gradients are taken on the model's parameters.
        params, buffers = unsqueezed_state(models[0])
        own: Params = dict(models[0].named_parameters())
        spec = model_spec(models[0])
        return StackedTrials(params, buffers, spec, own, FunctionalModel(models[0]))
    params, buffers, spec = stack_models(models)
    return StackedTrials(params, buffers, spec, params, meta_template(models[0]))
