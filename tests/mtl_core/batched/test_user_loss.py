"""A user's own loss and metric through the one trainer: K trials batched (the loss under
vmap) equal the same trials alone (the loss called directly)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from mtl_core.batched import train_batch
from mtl_core.config import TrialConfig
from mtl_core.experiments import EXPERIMENTS, register_experiment
from mtl_core.experiments.synthetic import Synthetic
from mtl_core.tasks import LOSSES, METRICS, Task, register_loss, register_metric
from mtl_core.trainer import train_trial
from tests.mtl_core.batched._helpers import assert_same_result

NAME = "synthetic_ranked_test"


def pairwise_rank(pred: Tensor, target: Tensor) -> Tensor:
    """RankNet's pairwise logistic loss (Burges et al., ICML 2005) over the batch's pairs,
    written for vmap: a 0/1 weight per pair instead of selecting the pairs."""
    score = pred.squeeze(-1)
    above = (target[:, None] > target[None, :]).to(score.dtype)  # i should rank above j
    return (above * F.softplus(score[None, :] - score[:, None])).sum() / above.sum().clamp(min=1)


def concordance(pred: Tensor, target: Tensor) -> float:
    """Share of the ordered pairs that the scores order the same way (plain Python is fine)."""
    score, value = pred.reshape(-1), target.reshape(-1)
    above = value[:, None] > value[None, :]
    return float((score[:, None] > score[None, :])[above].float().mean())


def host_scaled(pred: Tensor, target: Tensor) -> Tensor:
    """Breaks the contract: reads a value on the host, which works alone but not under vmap."""
    scale = 1.0 + float(pred.detach().abs().max())
    return ((pred.squeeze(-1) - target) ** 2).mean() / scale


class Ranked(Synthetic):
    """The synthetic problem with its regression task trained and judged by rank only."""

    name: ClassVar[str] = NAME
    tasks: ClassVar[tuple[Task, ...]] = (
        Task("regression", "test_pairwise_rank", "test_concordance", 1, ("rmse",)),
        Task("classification", "cross_entropy", "accuracy", 3),
    )

    def __init__(self) -> None:
        super().__init__(train_size=400, val_size=100, test_size=100)


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for registry in (EXPERIMENTS, LOSSES, METRICS):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    register_loss("test_pairwise_rank")(pairwise_rank)
    register_loss("test_host_scaled")(host_scaled)
    register_metric("test_concordance", higher_is_better=True)(concordance)
    register_experiment(Ranked)
    yield


def _config(seed: int, **kwargs: object) -> TrialConfig:
    return TrialConfig.model_validate(
        {"experiment": NAME, "epochs": 2, "batch_size": 64, "seed": seed, "data_seed": 3, **kwargs}
    )


@pytest.mark.usefixtures("registered")
def test_a_user_loss_batched_equals_each_trial_alone() -> None:
    configs = [
        _config(1),
        _config(2, weights={"classification": 0.3}),
        _config(3, strategy="dwa"),
    ]
    batched = train_batch(configs)
    for config, result in zip(configs, batched, strict=True):
        alone = train_trial(config)
        assert_same_result(alone, result)
        assert 0.5 < alone.test_metrics["regression"] <= 1.0  # it learned to rank
        assert "regression/rmse" in alone.test_extra


@pytest.mark.usefixtures("registered")
def test_a_loss_that_reads_the_host_trains_alone_and_fails_batched() -> None:
    """Why the contract says torch operations only, and why to try a loss at K = 2."""

    class HostScaled(Ranked):
        name: ClassVar[str] = "synthetic_host_scaled_test"
        tasks: ClassVar[tuple[Task, ...]] = (
            Task("regression", "test_host_scaled", "rmse", 1),
            Task("classification", "cross_entropy", "accuracy", 3),
        )

    register_experiment(HostScaled)
    configs = [_config(seed, experiment=HostScaled.name, epochs=1) for seed in (1, 2)]
    assert train_trial(configs[0]).epochs_run == 1
    with pytest.raises(RuntimeError, match=r"vmap|item|data-dependent"):
        train_batch(configs)


@pytest.mark.usefixtures("registered")
def test_a_loss_that_forgets_the_reduction_is_named() -> None:
    register_loss("test_per_sample")(lambda pred, target: (pred.squeeze(-1) - target) ** 2)

    class PerSample(Ranked):
        name: ClassVar[str] = "synthetic_per_sample_test"
        tasks: ClassVar[tuple[Task, ...]] = (
            Task("regression", "test_per_sample", "rmse", 1),
            Task("classification", "cross_entropy", "accuracy", 3),
        )

    register_experiment(PerSample)
    for seeds in ((1,), (1, 2)):
        configs = [_config(seed, experiment=PerSample.name, epochs=1) for seed in seeds]
        with pytest.raises(ValueError, match=r"task 'regression' must return a 0-dimensional"):
            train_batch(configs)


def test_the_ranking_loss_meets_the_contract() -> None:
    pred, target = torch.randn(4, 8, 1), torch.randn(4, 8)
    batched = torch.func.vmap(pairwise_rank)(pred, target)
    torch.testing.assert_close(
        batched, torch.stack([pairwise_rank(p, t) for p, t in zip(pred, target, strict=True)])
    )
