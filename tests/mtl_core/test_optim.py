"""The stacked optimizer reproduces torch.optim per trial."""

from __future__ import annotations

import pytest
import torch

from mtl_core.optim import StackedOptimizer, clip_per_trial


@pytest.mark.parametrize("all_live", [False, True])
@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd"])
def test_matches_torch_optim_per_trial(kind: str, all_live: bool) -> None:
    g = torch.Generator().manual_seed(0)
    lrs, decays = [1e-2, 3e-3, 5e-2], [0.0, 1e-2, 1e-3]
    stacked = torch.randn(3, 4, 5, generator=g)
    singles = [torch.nn.Parameter(stacked[k].clone()) for k in range(3)]
    optimizers: list[torch.optim.Optimizer] = []
    for p, lr, wd in zip(singles, lrs, decays, strict=True):
        if kind == "adam":
            optimizers.append(torch.optim.Adam([p], lr=lr, weight_decay=wd))
        elif kind == "adamw":
            optimizers.append(torch.optim.AdamW([p], lr=lr, weight_decay=wd))
        else:
            optimizers.append(torch.optim.SGD([p], lr=lr, momentum=0.9, weight_decay=wd))
    fused = StackedOptimizer(kind, [stacked], torch.tensor(lrs), torch.tensor(decays))
    # Slot 2 is masked unless all_live: a masked slot must not move.
    active = torch.tensor([True, True, all_live])
    live = 3 if all_live else 2
    frozen = stacked[2].clone()
    for _ in range(5):
        grad = torch.randn(3, 4, 5, generator=g)
        fused.step([grad], active, all_active=all_live)
        for k in range(live):
            singles[k].grad = grad[k].clone()
            optimizers[k].step()
    for k in range(live):
        assert torch.allclose(stacked[k], singles[k].detach(), atol=1e-6)
    if not all_live:
        assert torch.equal(stacked[2], frozen)


def test_clip_per_trial_uses_each_trials_global_norm() -> None:
    a = torch.full((2, 3), 2.0)
    b = torch.full((2, 1), 2.0)
    ref = [a[0].clone().requires_grad_(), b[0].clone().requires_grad_()]
    for p, g in zip(ref, (a[0], b[0]), strict=True):
        p.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(ref, 1.0)
    clip_per_trial([a, b], torch.tensor([1.0, float("inf")]))
    assert ref[0].grad is not None and ref[1].grad is not None
    assert torch.allclose(a[0], ref[0].grad) and torch.allclose(b[0], ref[1].grad)
    assert torch.equal(a[1], torch.full((3,), 2.0))
