"""GradDrop (Chen et al. 2020) against torchjd's GradDrop aggregator, fed the same draws U."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchjd.aggregation import GradDrop as OracleGradDrop

from mtl_core.errors import ConfigError
from mtl_core.production import MultiTaskLoss
from mtl_core.weighting import GradientWeighting, parse_strategy_config
from mtl_core.weighting.graddrop import GradDrop
from tests.mtl_core.weighting._toy import (
    GRADIENT_KINDS,
    ToyMTL,
    make_ctx,
    make_grads,
    make_strategy,
    step_inputs,
    toy_data,
    toy_losses,
)


def _strategy(leaks: list[float], num_tasks: int) -> GradDrop:
    strategy = make_strategy("graddrop", {}, num_tasks, seeds=range(len(leaks)))
    assert isinstance(strategy, GradDrop)
    for slot, leak in enumerate(leaks):
        strategy.reset_slot(slot, parse_strategy_config("graddrop", {"leak": leak}), make_ctx())
    return strategy


def _oracle(
    matrix: torch.Tensor, uniform: torch.Tensor, leak: float, monkeypatch: pytest.MonkeyPatch
) -> torch.Tensor:
    """torchjd's GradDrop of one ``[T, P]`` matrix, its ``torch.rand`` replaced by ``uniform``.

    Conventions mapped: torchjd takes one leak per row (ours is one per trial, so the row
    vector is that value T times) and draws U itself from the global generator (here: ours).
    """
    leaks = torch.full((matrix.shape[0],), leak, dtype=matrix.dtype)
    with monkeypatch.context() as patch:
        patch.setattr(torch, "rand", lambda *args, **kwargs: uniform.to(matrix.dtype).clone())
        return OracleGradDrop(leak=leaks)(matrix)


@settings(max_examples=30, deadline=None, database=None)
@given(
    num_slots=st.sampled_from([1, 4]),
    num_tasks=st.sampled_from([2, 3, 5]),
    kinds=st.lists(st.sampled_from(GRADIENT_KINDS), min_size=4, max_size=4),
    exponents=st.lists(st.floats(-6, 6), min_size=4, max_size=4),
    leaks=st.lists(st.sampled_from([0.0, 0.3, 1.0]), min_size=4, max_size=4),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_torchjd_on_the_same_draws(
    num_slots: int,
    num_tasks: int,
    kinds: list[str],
    exponents: list[float],
    leaks: list[float],
    dtype: torch.dtype,
    seed: int,
) -> None:
    dim = 7
    grads = torch.stack(
        [
            torch.as_tensor(make_grads(kinds[k], num_tasks, dim, 10.0 ** exponents[k], seed + k))
            for k in range(num_slots)
        ]
    ).to(dtype)
    # Some inactive tasks (scale 0): their rows are all zero, as the trainer gives them.
    scale = torch.rand(num_slots, num_tasks, generator=torch.Generator().manual_seed(seed)) > 0.3
    scale[:, 0] = True
    grads = grads * scale.unsqueeze(-1).to(dtype)
    uniform = torch.rand(num_slots, dim, generator=torch.Generator().manual_seed(seed + 1))
    strategy = _strategy(leaks[:num_slots], num_tasks)
    strategy.uniforms = lambda size, device: uniform  # type: ignore[method-assign]
    combined, weights = strategy.combine(
        grads, step_inputs(torch.ones(num_slots, num_tasks), scale)
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        expected = torch.stack(
            [_oracle(grads[k], uniform[k], leaks[k], monkeypatch) for k in range(num_slots)]
        )
    assert combined.dtype == dtype
    atol = 1e-6 * float(grads.abs().sum(dim=1).max()) if grads.numel() else 0.0
    torch.testing.assert_close(combined, expected, rtol=1e-5, atol=atol)
    # No per-task weights: 1 on the active tasks.
    torch.testing.assert_close(weights, scale.to(weights.dtype))


def test_draws_one_seed_per_step_from_the_trial_generator() -> None:
    strategy = _strategy([0.0, 0.0], 2)
    draws = strategy.uniforms(5, torch.device("cpu"))
    for slot in range(2):
        generator = make_ctx().generator
        seed = int(torch.randint(2**62, (1,), generator=generator))
        expected = torch.rand(5, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(draws[slot], expected)
    strategy.release_slot(1)
    assert (strategy.uniforms(5, torch.device("cpu"))[1] == 1).all()


def test_sign_purity_decides_which_sign_survives(monkeypatch: pytest.MonkeyPatch) -> None:
    # Element 0: all positive (P = 1) is kept for any U; element 1: all negative (P = 0) too;
    # element 2: +1 and -3, P = 1/4: U = 0.2 keeps the positive part, U = 0.3 the negative.
    grads = torch.tensor([[[1.0, -1.0, 1.0], [2.0, -2.0, -3.0]]])
    strategy = _strategy([0.0], 2)
    inputs = step_inputs(torch.ones(1, 2))
    for u, last in ((0.2, 1.0), (0.3, -3.0)):

        def uniforms(size: int, device: torch.device, u: float = u) -> torch.Tensor:
            return torch.full((1, size), u)

        monkeypatch.setattr(strategy, "uniforms", uniforms)
        combined, _ = strategy.combine(grads, inputs)
        torch.testing.assert_close(combined, torch.tensor([[3.0, -3.0, last]]))


def test_full_leak_is_the_plain_sum() -> None:
    grads = torch.randn(4, 3, 9, generator=torch.Generator().manual_seed(0))
    strategy = _strategy([1.0] * 4, 3)
    combined, _ = strategy.combine(grads, step_inputs(torch.ones(4, 3)))
    torch.testing.assert_close(combined, grads.sum(dim=1))


def test_works_on_the_representation_and_gives_heads_their_own_gradient() -> None:
    model = ToyMTL()
    x, targets = toy_data()
    loss = MultiTaskLoss(["a", "b"], "graddrop", weights={"b": 2.0}, seed=3)
    assert loss.space == "representation"
    losses, z = toy_losses(model, x, targets)
    weights = loss.backward(losses, model.shared(), model.task_specific(), representation=z)
    assert weights == {"a": 1.0, "b": 1.0}

    # Reference: torchjd's GradDrop of the representation Jacobian of (L_a, 2 L_b) with the
    # draws the trial's generator gives (seed 3), pulled back through the trunk.
    losses, z = toy_losses(model, x, targets)
    scaled = [losses[0], 2.0 * losses[1]]
    jacobian = torch.stack(
        [torch.autograd.grad(s, z, retain_graph=True)[0].flatten() for s in scaled]
    )
    generator = torch.Generator().manual_seed(3)
    seed = int(torch.randint(2**62, (1,), generator=generator))
    uniform = torch.rand(z.numel(), generator=torch.Generator().manual_seed(seed))
    with pytest.MonkeyPatch.context() as monkeypatch:
        combined = _oracle(jacobian, uniform, 0.0, monkeypatch)
    expected = torch.autograd.grad(z, model.shared(), grad_outputs=combined.reshape(z.shape))
    for p, e in zip(model.shared(), expected, strict=True):
        assert p.grad is not None
        torch.testing.assert_close(p.grad, e, rtol=1e-5, atol=1e-7)
    for t, s in enumerate(scaled):
        own = torch.autograd.grad(s, list(model.heads[t].parameters()), retain_graph=True)
        for p, e in zip(model.heads[t].parameters(), own, strict=True):
            assert p.grad is not None
            torch.testing.assert_close(p.grad, e)


def test_needs_a_representation() -> None:
    model = ToyMTL()
    x, targets = toy_data()
    loss = MultiTaskLoss(["a", "b"], "graddrop")
    losses, _ = toy_losses(model, x, targets)
    with pytest.raises(ConfigError, match="representation") as error:
        loss.backward(losses, model.shared(), model.task_specific())
    assert "\n" not in str(error.value)


def test_is_a_gradient_method_on_the_representation() -> None:
    assert issubclass(GradDrop, GradientWeighting)
    assert GradDrop.gradient_space(parse_strategy_config("graddrop", {})) == "representation"
    with pytest.raises(ConfigError, match="leak"):
        parse_strategy_config("graddrop", {"leak": 1.5})
