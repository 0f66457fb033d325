"""Small `NetworkParts` factories for tests: an MLP and a LeNet-shaped CNN on 36x36 inputs."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from mtl_core.architectures import NetworkParts

CNN_INPUT_SHAPE = (1, 36, 36)


def mlp_parts(
    input_dim: int = 8,
    hidden: Sequence[int] = (16, 16, 16),
    out_dims: Sequence[int] = (1, 1),
) -> NetworkParts:
    """An MLP trunk of ``len(hidden)`` Linear+ReLU blocks and one Linear head per task.

    Args:
        input_dim: input features.
        hidden: width of each trunk block.
        out_dims: one output width per task (the number of tasks is its length).
    """
    if not hidden:
        raise ValueError(f"hidden needs at least one width, got {hidden=}")
    widths = [input_dim, *hidden]

    def make_blocks() -> list[nn.Module]:
        return [nn.Sequential(nn.Linear(a, b), nn.ReLU()) for a, b in itertools.pairwise(widths)]

    def make_head(t: int) -> nn.Module:
        return nn.Linear(widths[-1], out_dims[t])

    return NetworkParts(
        make_blocks=make_blocks,
        representation_dim=widths[-1],
        make_head=make_head,
        input_dim=input_dim,
        num_tasks=len(out_dims),
        input_shape=(input_dim,),
    )


def cnn_parts(
    channels: tuple[int, int] = (4, 8),
    hidden: int = 32,
    out_dims: Sequence[int] = (1, 1),
    batch_norm: bool = False,
) -> NetworkParts:
    """A small LeNet on ``[B, 1, 36, 36]``: [conv block, conv block + Flatten, Linear block].

    Args:
        channels: output channels of the two conv blocks.
        hidden: width of the Linear block (the representation).
        out_dims: one output width per task (the number of tasks is its length).
        batch_norm: add BatchNorm after each conv (exercises buffers).
    """
    c1, c2 = channels
    flat = c2 * 6 * 6  # 36 -conv5-> 32 -pool-> 16 -conv5-> 12 -pool-> 6

    def norm(c: int) -> nn.Module:
        return nn.BatchNorm2d(c) if batch_norm else nn.Identity()

    def make_blocks() -> list[nn.Module]:
        return [
            nn.Sequential(nn.Conv2d(1, c1, 5), norm(c1), nn.MaxPool2d(2), nn.ReLU()),
            nn.Sequential(nn.Conv2d(c1, c2, 5), norm(c2), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten()),
            nn.Sequential(nn.Linear(flat, hidden), nn.ReLU()),
        ]

    def make_head(t: int) -> nn.Module:
        return nn.Linear(hidden, out_dims[t])

    return NetworkParts(
        make_blocks=make_blocks,
        representation_dim=hidden,
        make_head=make_head,
        input_dim=int(torch.Size(CNN_INPUT_SHAPE).numel()),
        num_tasks=len(out_dims),
        input_shape=CNN_INPUT_SHAPE,
    )


def toy_regression(
    parts_kind: str, batch: int = 32, seed: int = 0
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Inputs for ``mlp_parts()`` / ``cnn_parts()`` and two learnable regression targets.

    Args:
        parts_kind: ``"mlp"`` (input ``[B, 8]``) or ``"cnn"`` (input ``[B, 1, 36, 36]``).
        batch: number of samples.
        seed: seed of the data.
    """
    gen = torch.Generator().manual_seed(seed)
    if parts_kind == "mlp":
        x = torch.randn(batch, 8, generator=gen)
        flat = x
    elif parts_kind == "cnn":
        x = torch.rand(batch, *CNN_INPUT_SHAPE, generator=gen)
        flat = x.flatten(1)
    else:
        raise ValueError(f"parts_kind must be 'mlp' or 'cnn', got {parts_kind=}")
    half = flat.shape[1] // 2
    # Two different (but related) functions of the input, so the tasks are not identical.
    y0 = (flat[:, :half].mean(1, keepdim=True) - flat[:, half:].mean(1, keepdim=True)) * 4
    y1 = torch.tanh(flat[:, :half].sum(1, keepdim=True) / half**0.5)
    return x, [y0, y1]


def reached_by_task(model: nn.Module, outputs: Sequence[torch.Tensor]) -> list[set[int]]:
    """For each task's output, the ids of the model's parameters its gradient reaches (graph
    connectivity, not a non-zero value): what `MultiTaskModel.shared_parameters` is checked
    against."""
    params = list(model.parameters())
    reached = []
    for output in outputs:
        grads = torch.autograd.grad(output.sum(), params, allow_unused=True, retain_graph=True)
        reached.append({id(p) for p, g in zip(params, grads, strict=True) if g is not None})
    return reached
