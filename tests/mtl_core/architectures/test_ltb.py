"""Learning to Branch: a Gumbel-softmax tree of trunk-block copies."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from mtl_core.architectures import NetworkParts, build_model
from mtl_core.architectures.ltb import LTBModel, gumbel_noise
from mtl_core.errors import ConfigError
from tests.mtl_core.batched._helpers import (
    STRATEGY_KINDS,
    architecture_configs,
    assert_batched_equals_alone,
)
from tests.utils.networks import cnn_parts, mlp_parts, reached_by_task, toy_regression


def ltb(kind: str = "mlp", out_dims: tuple[int, ...] = (1, 2, 1), **params: Any) -> LTBModel:
    torch.manual_seed(0)
    parts = mlp_parts(out_dims=out_dims) if kind == "mlp" else cnn_parts(out_dims=out_dims)
    model = build_model("ltb", params, parts)
    assert isinstance(model, LTBModel)
    return model


def randomise_logits(model: LTBModel) -> None:
    with torch.no_grad():
        for stage in model.logits():
            for logits in stage:
                logits.normal_()


def test_gumbel_noise_is_reproducible_and_varies_with_step_and_index() -> None:
    seed, step = torch.tensor(1234), torch.tensor(7)
    draws = gumbel_noise(seed, step, 50)
    assert draws.dtype == torch.float64 and draws.shape == (50,)
    assert torch.equal(draws, gumbel_noise(seed.clone(), step.clone(), 50))
    assert torch.equal(draws[:20], gumbel_noise(seed, step, 20))  # index i is draw i
    assert len(set(draws.tolist())) == 50
    assert not torch.equal(draws, gumbel_noise(seed, step + 1, 50))
    assert not torch.equal(draws, gumbel_noise(seed + 1, step, 50))


def test_gumbel_noise_has_the_gumbel_mean_and_std() -> None:
    seed = torch.tensor(99)
    draws = torch.cat([gumbel_noise(seed, torch.tensor(s), 1000) for s in range(200)])
    assert torch.isfinite(draws).all()
    # 2e5 draws: the standard error of the mean is 1.28 / 447 ≈ 0.003.
    assert abs(float(draws.mean()) - 0.5772157) < 0.015
    assert abs(float(draws.std()) - math.pi / math.sqrt(6)) < 0.015
    # P(g <= 0) = exp(-1) for the standard Gumbel.
    assert abs(float((draws <= 0).double().mean()) - math.exp(-1)) < 0.005


def test_gumbel_noise_is_identical_under_vmap() -> None:
    seeds = torch.tensor([1, 2, 3**39, -(2**62)])
    steps = torch.tensor([0, 5, 6, 2**40])
    batched = torch.func.vmap(lambda s, t: gumbel_noise(s, t, 37))(seeds, steps)
    for i in range(len(seeds)):
        assert torch.equal(batched[i], gumbel_noise(seeds[i], steps[i], 37))


def test_stages_have_branches_nodes_then_one_per_task() -> None:
    model = ltb(branches=4)
    assert [len(stage) for stage in model.nodes()] == [4, 4, 3]
    assert [len(stage) for stage in model.logits()] == [0, 4, 3]
    assert all(len(logits) == 4 for stage in model.logits() for logits in stage)
    assert all(bool((logits == 0).all()) for stage in model.logits() for logits in stage)
    assert [len(stage) for stage in ltb().nodes()] == [3, 3, 3]  # default: the number of tasks
    first = [next(node.parameters()) for node in model.nodes()[0]]
    assert not torch.equal(first[0], first[1])  # fresh copies


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_evaluation_mixtures_are_the_one_hot_argmax(kind: str) -> None:
    model = ltb(kind, branches=2)
    randomise_logits(model)
    model.eval()
    x, _ = toy_regression(kind, batch=5)
    weights, logits, nodes = model.branch_weights(), model.logits(), model.nodes()
    for stage_weights, stage_logits in zip(weights, logits, strict=True):
        for w, lg in zip(stage_weights, stage_logits, strict=True):
            assert torch.equal(w, nn.functional.one_hot(lg.argmax(), len(w)).float())
    # The output is the tree's path: each node reads its one chosen parent.
    out = model(x).outputs
    for t, head in enumerate(model.heads):
        path = [t]
        for stage in range(len(nodes) - 1, 0, -1):
            path.append(int(logits[stage][path[-1]].argmax()))
        h = x
        for s, j in enumerate(reversed(path)):
            h = nodes[s][j](h)
        torch.testing.assert_close(out[t], head(h))
    assert model.counter.step == 0


def test_warmup_training_forward_is_a_noise_free_soft_mixture() -> None:
    model = ltb(warmup_steps=3, temperature=0.5)
    randomise_logits(model)
    x, _ = toy_regression("mlp", batch=4)
    first = model(x).outputs
    model.counter.step.zero_()
    again = model(x).outputs
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    for w, logits in zip(model.branch_weights()[2], model.logits()[2], strict=True):
        torch.testing.assert_close(w, torch.softmax(logits / 0.5, 0))
    model.counter.step.fill_(3)  # the warm-up is over: noisy, different every step
    noisy = model.branch_weights()[2][0]
    assert not torch.allclose(noisy, torch.softmax(model.logits()[2][0] / 0.5, 0))
    model.counter.step.fill_(4)
    assert not torch.equal(noisy, model.branch_weights()[2][0])


def test_step_counts_training_forwards_only() -> None:
    model = ltb()
    x, _ = toy_regression("mlp", batch=4)
    model(x)
    with torch.no_grad():
        model(x)
    assert int(model.counter.step) == 2
    model.eval()
    model(x)
    model.branch_weights()
    assert int(model.counter.step) == 2
    model.train()
    model.branch_weights()
    assert int(model.counter.step) == 2


def reached_by(model: LTBModel, x: Tensor) -> list[set[int]]:
    """For each task, the ids of the parameters its output reaches (graph connectivity)."""
    return reached_by_task(model, model(x).outputs)


@pytest.mark.parametrize("warmup_steps", [0, 100])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_shared_parameters_are_exactly_those_every_task_reaches(
    kind: str, warmup_steps: int
) -> None:
    model = ltb(kind, branches=2, warmup_steps=warmup_steps)
    x, _ = toy_regression(kind, batch=3)
    reached = reached_by(model, x)
    everyone = set.intersection(*reached)
    assert {id(p) for p in model.shared_parameters()} == everyone
    # Task t alone reaches its last-stage node, that node's logits and its head.
    for t, own in enumerate(reached):
        mine = [*model.nodes()[-1][t].parameters(), model.logits()[-1][t]]
        mine += model.heads[t].parameters()
        assert own - everyone == {id(p) for p in mine}
    last = {id(p) for p in model.last_shared_parameters()}
    assert last == {id(p) for node in model.nodes()[-2] for p in node.parameters()}


class BranchWeights(nn.Module):
    """Calls a model's `LTBModel.branch_weights` as a module, for functional_call."""

    def __init__(self, model: LTBModel) -> None:
        super().__init__()
        self.model = model

    def forward(self) -> list[Tensor]:
        return [w for stage in self.model.branch_weights() for w in stage]


def test_vmapped_training_forward_equals_each_model_after_the_warmup() -> None:
    models = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        model = build_model("ltb", {"warmup_steps": 1}, mlp_parts(out_dims=(1, 2)))
        assert isinstance(model, LTBModel)
        models.append(model)
    x, _ = toy_regression("mlp", batch=4)
    params, buffers = torch.func.stack_module_state(list[nn.Module](models))
    buffers = {name: b.clone() for name, b in buffers.items()}
    buffers["counter.step"] += torch.tensor([1, 4, 9])  # noise on, different steps
    assert len(set(buffers["counter.seed"].tolist())) == 3  # each trial's own seed

    def forward(p: dict[str, Tensor], b: dict[str, Tensor]) -> list[Tensor]:
        return torch.func.functional_call(models[0], (p, b), (x,)).outputs

    def weights(p: dict[str, Tensor], b: dict[str, Tensor]) -> list[Tensor]:
        named = {f"model.{n}": v for n, v in {**p, **b}.items()}
        return torch.func.functional_call(BranchWeights(models[0]), named, ())

    batched_weights = torch.func.vmap(weights)(params, buffers)
    batched = torch.func.vmap(forward)(params, buffers)
    assert buffers["counter.step"].tolist() == [2, 5, 10]  # advanced in place, per trial
    for i, model in enumerate(models):
        with torch.no_grad():
            model.counter.step.fill_(buffers["counter.step"][i] - 1)
        # The mixtures, noise included, are bit-identical ...
        for got_w, expected_w in zip(batched_weights, BranchWeights(model)(), strict=True):
            assert torch.equal(got_w[i], expected_w)
        single = model(x).outputs
        # ... the outputs within an ulp (batched and single matmul kernels round apart).
        for got, expected in zip(batched, single, strict=True):
            torch.testing.assert_close(got[i], expected, rtol=1e-6, atol=1e-7)


def test_a_one_block_trunk_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="at least 2"):
        build_model("ltb", None, mlp_parts(hidden=(16,)))


def test_two_blocks_with_a_parameterless_first_is_a_config_error() -> None:
    parts = NetworkParts(
        make_blocks=lambda: [nn.Flatten(), nn.Sequential(nn.Linear(8, 4), nn.ReLU())],
        representation_dim=4,
        make_head=lambda t: nn.Linear(4, 1),
        input_dim=8,
        num_tasks=2,
    )
    with pytest.raises(ConfigError, match="parameters"):
        build_model("ltb", None, parts)


@pytest.mark.parametrize(
    "params", [{"temperature": 0}, {"branches": 0}, {"warmup_steps": -1}, {"temperature": "inf"}]
)
def test_bad_parameters_are_config_errors(params: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=next(iter(params))):
        build_model("ltb", params, mlp_parts())


@pytest.mark.parametrize("strategy", STRATEGY_KINDS)
def test_batched_trials_equal_trials_alone(strategy: str) -> None:
    assert_batched_equals_alone(
        architecture_configs("ltb", strategy, {"warmup_steps": 1, "branches": 3})
    )
