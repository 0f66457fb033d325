"""Helpers of the meta-learned strategies' tests (Auto-λ, MOML, FORUM): look-aheads on small
problems, a trainer step to compare with plain autograd, and independent solvers."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize
from torch import Tensor, nn

from mtl_core.batched import BatchedRun
from mtl_core.batched.look_ahead import LookAheadSource
from mtl_core.config import TrialConfig
from mtl_core.experiments import Split
from mtl_core.tasks import build_loss, task_losses
from mtl_core.weighting import LookAhead, LossWeighting, StepInputs, grads_of
from tests.mtl_core.weighting._toy import make_strategy


def softmax_jacobian(z: Tensor) -> Tensor:
    """``[T, T]`` diag(z) − z zᵀ, written out."""
    return torch.diag(z) - torch.outer(z, z)


def regression_look_ahead(
    theta: Tensor, x: Tensor, ys: Sequence[Tensor], vx: Tensor, vys: Sequence[Tensor]
) -> tuple[LookAhead, Tensor]:
    """One trial (K = 1): a shared linear model ``x @ θ`` for every task, MSE per task, on the
    training rows (``x``, ``ys``) and the validation rows (``vx``, ``vys``)."""

    def losses_at(inputs: Tensor, targets: Sequence[Tensor]):
        def at(params: Sequence[Tensor]) -> Tensor:
            prediction = inputs @ params[0][0]
            return torch.stack([((prediction - y) ** 2).mean() for y in targets]).unsqueeze(0)

        return at

    look = LookAhead(
        params=[theta.detach()],
        trained=[theta],
        train_losses=losses_at(x, ys),
        val_losses=losses_at(vx, vys),
        gradients=lambda objective, create: grads_of(objective, [theta], True, create),
        lr=torch.tensor([0.05]),
        weight_decay=torch.zeros(1),
    )
    return look, losses_at(x, ys)([theta])


def corrupted_auxiliary_run(name: str, params: dict[str, float], steps: int) -> Tensor:
    """Three regression tasks on one shared linear model, SGD (lr 0.05) on the strategy's
    objective: a primary task y = x·a, a helper y = x·a + noise, and an auxiliary task whose
    *training* labels are flipped, y = −x·a + noise (its validation labels, like the others',
    are x·a). Returns the reported weights of the last step, ``[3]``."""
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(4, generator=gen)
    x, vx = torch.randn(64, 4, generator=gen), torch.randn(64, 4, generator=gen)
    ys = [x @ a, x @ a + 0.3 * torch.randn(64, generator=gen)]
    ys.append(-(x @ a) + 0.1 * torch.randn(64, generator=gen))
    strategy = make_strategy(name, params, 3)
    assert isinstance(strategy, LossWeighting)
    theta = torch.zeros(1, 4, requires_grad=True)
    scale, occupied = torch.ones(1, 3), torch.ones(1, dtype=torch.bool)
    weights = torch.ones(1, 3)
    for _ in range(steps):
        look, losses = regression_look_ahead(theta, x, ys, vx, [vx @ a] * 3)
        objective, weights = strategy.objective(
            StepInputs(losses, scale, [theta], occupied, look_ahead=look)
        )
        (grad,) = torch.autograd.grad(objective.sum(), [theta])
        with torch.no_grad():
            theta -= 0.05 * grad
    return weights[0]


@dataclass
class TrainerStep:
    """One K = 1 step of a `synthetic` trial as the trainer sets it up: the run, the step's
    inputs with the look-ahead its `LookAheadSource` builds, the live model's parameters (in
    the look-ahead's order), and a copy of the model with the step's training and validation
    rows, for plain autograd."""

    run: BatchedRun
    inputs: StepInputs
    parameters: list[Tensor]
    model: nn.Module
    train: Split
    val: Split


def trainer_step(config: TrialConfig) -> TrainerStep:
    """The first step of ``config``'s trial, on its first training rows."""
    run = BatchedRun([config])
    model = run.template.model
    own = dict(model.named_parameters())
    parameters: list[Tensor] = [own[name] for name in run.spec.param_names]
    loss_fns = [build_loss(task.loss) for task in run.experiment.tasks]
    names = run.experiment.task_names

    def per_trial(
        outputs: Sequence[Tensor], representation: Tensor | None, reg: Tensor, *targets: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The trainer's per-trial losses, run inside the look-ahead's vmap."""
        return task_losses(loss_fns, names, outputs, targets).float(), reg.float()

    source = LookAheadSource(
        run.template,
        per_trial,
        run.spec.param_names,
        run.data,
        run.optimizer,
        run.batch_size,
        run.device,
        autocast=False,
    )
    rows = torch.arange(run.batch_size)
    val_rows = source.draw_validation_rows(run.slots)
    train = Split(run.data.train.x[rows], [t[rows] for t in run.data.train.targets])
    val = Split(run.data.val.x[val_rows[0]], [t[val_rows[0]] for t in run.data.val.targets])
    losses = task_losses(loss_fns, names, model(train.x).outputs, train.targets)
    look = source.build(run.params, run.buffers, parameters, rows, False, val_rows)
    occupied = torch.ones(1, dtype=torch.bool)
    inputs = StepInputs(losses[None], run.fixed_weights.clone(), [], occupied, look_ahead=look)
    return TrainerStep(run, inputs, parameters, copy.deepcopy(model), train, val)


def plain_losses(model: nn.Module, split: Split) -> list[Tensor]:
    """`synthetic`'s two losses written with torch alone: MSE, then cross-entropy."""
    regression, classification = model(split.x).outputs
    y_reg, y_cls = split.targets
    return [
        F.mse_loss(regression.reshape(y_reg.shape), y_reg),
        F.cross_entropy(classification, y_cls),
    ]


def sgd_step(model: nn.Module, update: Tensor) -> None:
    """``θ -= update`` on ``model``'s parameters, ``update`` flat in their registration order."""
    with torch.no_grad():
        offset = 0
        for p in model.parameters():
            p.sub_(update[offset : offset + p.numel()].reshape(p.shape))
            offset += p.numel()


def plain_gradient(loss: Tensor, model: nn.Module) -> Tensor:
    """The flat gradient of ``loss`` over ``model``'s parameters, in their registration order."""
    grads = torch.autograd.grad(
        loss, list(model.parameters()), retain_graph=True, allow_unused=True, materialize_grads=True
    )
    return torch.cat([g.reshape(-1) for g in grads])


def min_norm_point(rows: np.ndarray) -> np.ndarray:
    """The min-norm point of the convex hull of ``rows`` by SLSQP (an independent solver)."""
    n = rows.shape[0]
    gram = rows @ rows.T
    result = minimize(
        lambda w: w @ gram @ w,
        np.full(n, 1.0 / n),
        jac=lambda w: 2 * gram @ w,
        bounds=[(0.0, None)] * n,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 500},
    )
    return np.asarray(result.x @ rows)
