"""Stacked models: BatchNorm running statistics are kept per trial under vmap."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from mtl_core.architectures import NetworkParts, build_model
from mtl_core.batched import BatchedRun, train_batch
from mtl_core.batched.stacking import StackedForward, meta_template, stack_models
from mtl_core.config import TrialConfig
from mtl_core.experiments import EXPERIMENTS, DataShapes
from mtl_core.experiments._registry import register_experiment
from mtl_core.experiments.synthetic import NUM_CLASSES, NUM_FEATURES, Synthetic
from mtl_core.trainer import train_trial
from tests.mtl_core.batched._helpers import assert_same_result


def _bn_blocks() -> list[nn.Module]:
    return [
        # No bias before BatchNorm: its gradient is pure rounding noise, which Adam would turn
        # into lr-sized steps that differ between any two summation orders.
        nn.Sequential(nn.Linear(NUM_FEATURES, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU()),
        nn.Sequential(nn.Linear(16, 16), nn.ReLU()),
    ]


def _bn_head(task_index: int) -> nn.Module:
    return nn.Linear(16, 1 if task_index == 0 else NUM_CLASSES)


class SyntheticBatchNorm(Synthetic):
    """The synthetic problem with a BatchNorm layer in the trunk (tests only)."""

    name: ClassVar[str] = "synthetic_batchnorm_test"

    def __init__(self) -> None:
        super().__init__(train_size=600, val_size=200, test_size=200)

    def network_parts(self, data: DataShapes) -> NetworkParts:
        return NetworkParts(_bn_blocks, 16, _bn_head, data.input_dim, len(self.tasks))


if SyntheticBatchNorm.name not in EXPERIMENTS:
    register_experiment(SyntheticBatchNorm)


def test_vmapped_forward_updates_each_trials_running_stats() -> None:
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        parts = SyntheticBatchNorm().parts_for(DataShapes((NUM_FEATURES,)))
        models.append(build_model("hard", {}, parts))
    params, buffers, _ = stack_models(models)
    x = torch.randn(32, NUM_FEATURES)
    StackedForward(meta_template(models[0]))(params, buffers, x, training=True)
    for model in models:
        model.train()
        model(x)
    for k, model in enumerate(models):
        for name, buffer in model.named_buffers():
            assert torch.allclose(buffers[name][k], buffer, atol=1e-6), name
    assert int(buffers["trunk.0.1.num_batches_tracked"][0]) == 1
    assert not torch.allclose(buffers["trunk.0.1.running_mean"][0], torch.zeros(16))


def test_batchnorm_trials_equal_one_by_one() -> None:
    configs = [
        TrialConfig(
            experiment=SyntheticBatchNorm.name,
            seed=seed,
            epochs=2,
            data_seed=3,
            batch_size=64,
            weights={"regression": w},
        )
        for seed, w in ((1, 1.0), (2, 4.0))
    ]
    results = train_batch(configs)
    for config, result in zip(configs, results, strict=True):
        # Validation runs in eval mode on the running statistics: equal metrics need them.
        assert_same_result(train_trial(config), result)


def test_running_stats_differ_between_slots_after_training() -> None:
    configs = [
        TrialConfig(experiment=SyntheticBatchNorm.name, seed=seed, epochs=1, data_seed=3)
        for seed in (1, 2)
    ]
    run = BatchedRun(configs)
    run.run_epoch()
    mean = run.buffers["trunk.0.1.running_mean"]
    assert mean.shape == (2, 16)
    assert not torch.allclose(mean[0], mean[1])
    steps = run.steps_per_epoch
    assert run.buffers["trunk.0.1.num_batches_tracked"].tolist() == [steps, steps]
