"""The batched trainer equals training the same trials one by one (CPU, synthetic)."""

from __future__ import annotations

import pytest

from mtl_core.batched import (
    BatchedRun,
    SlotReport,
    can_batch_together,
    plan_batches,
    train_batch,
)
from mtl_core.config import TrialConfig
from mtl_core.errors import ConfigError, TrialStopped
from mtl_core.results import EpochReport
from mtl_core.trainer import train_trial
from tests.mtl_core.batched._helpers import assert_same_result


def _config(**kwargs: object) -> TrialConfig:
    base: dict[str, object] = {"experiment": "synthetic", "epochs": 3, "data_seed": 11}
    base.update(kwargs)
    return TrialConfig.model_validate(base)


def _check_equivalence(configs: list[TrialConfig]) -> None:
    assert can_batch_together(configs)
    batched = train_batch(configs)
    assert len(batched) == len(configs)
    for config, result in zip(configs, batched, strict=True):
        assert_same_result(train_trial(config), result)


def test_loss_based_mix_equals_one_by_one() -> None:
    _check_equivalence(
        [
            _config(strategy="fixed", weights={"regression": 3.0}, seed=1),
            _config(strategy="dwa", strategy_params={"tau": 1.5}, seed=2, lr=1e-2),
            _config(strategy="uncertainty", seed=3, lr=5e-3),
        ]
    )


def test_pcgrad_equals_one_by_one() -> None:
    _check_equivalence(
        [
            _config(strategy="pcgrad", seed=1, epochs=2),
            _config(strategy="pcgrad", seed=2, epochs=2, weights={"classification": 0.2}),
        ]
    )


def test_mgda_equals_one_by_one() -> None:
    _check_equivalence(
        [
            _config(strategy="mgda", seed=1, epochs=2),
            _config(strategy="mgda", seed=2, epochs=2, strategy_params={"normalization": "l2"}),
        ]
    )


def test_other_strategies_and_optimizers_equal_one_by_one() -> None:
    _check_equivalence(
        [
            _config(strategy="rlw", seed=1, optimizer="adamw", weight_decay=1e-2, epochs=2),
            _config(strategy="loss_balance", seed=2, optimizer="adamw", grad_clip=0.5, epochs=2),
            _config(strategy="famo", seed=3, optimizer="adamw", epochs=2),
            _config(strategy="gradnorm", seed=4, optimizer="adamw", epochs=2),
        ]
    )


def test_soft_sharing_with_sgd_equals_one_by_one() -> None:
    configs = [
        _config(
            architecture="soft",
            architecture_params={"pull": 0.1},
            optimizer="sgd",
            lr=0.05,
            seed=seed,
            epochs=2,
        )
        for seed in (1, 2)
    ]
    _check_equivalence(configs)


def test_mmoe_with_sampled_alternating_schedule_equals_one_by_one() -> None:
    configs = [
        _config(
            architecture="mmoe",
            schedule="alternating",
            schedule_params={"mode": "proportional"},
            seed=seed,
            epochs=2,
        )
        for seed in (1, 2)
    ]
    _check_equivalence(configs)


def test_on_epoch_prunes_one_trial_only() -> None:
    configs = [_config(seed=1), _config(seed=2)]
    seen: list[tuple[int, int]] = []

    def on_epoch(index: int, report: EpochReport) -> None:
        seen.append((index, report.epoch))
        if index == 1 and report.epoch == 1:
            raise TrialStopped("pruned at 1")

    results = train_batch(configs, on_epoch=on_epoch)
    assert results[0].epochs_run == 3 and results[0].stop_reason is None
    assert results[1].epochs_run == 1 and results[1].stop_reason == "pruned at 1"
    assert (1, 2) not in seen and (0, 3) in seen
    assert_same_result(train_trial(configs[0]), results[0])


def test_stopped_slot_refilled_trains_new_trial_like_one_by_one() -> None:
    first = _config(strategy="dwa", seed=1)
    pruned = _config(strategy="fixed", seed=2)
    newcomer = _config(strategy="uncertainty", seed=3, epochs=2, data_seed=None)
    run = BatchedRun([first, pruned], tags=["first", "pruned"])
    refilled: list[int] = []

    def on_epoch(reports: list[SlotReport]) -> list[int]:
        return [r.slot for r in reports if r.tag == "pruned" and r.report.epoch == 1]

    def refill(slot: int) -> tuple[TrialConfig, object] | None:
        if refilled:
            return None
        refilled.append(slot)
        return newcomer, "new"

    done = {item.tag: item.result for item in run.run(on_epoch, refill)}
    assert refilled == [1]
    assert done["pruned"].epochs_run == 1
    assert done["pruned"].stop_reason == "stopped after epoch 1"
    # The newcomer joined the batch: it took the batch's data order and reproduces alone.
    assert done["new"].config.data_seed == 11
    alone = train_trial(newcomer.model_copy(update={"data_seed": 11}))
    assert_same_result(alone, done["new"])
    assert_same_result(train_trial(first), done["first"])
    assert_same_result(train_trial(pruned, on_epoch=_stop_always), done["pruned"])


def _stop_always(report: EpochReport) -> None:
    raise TrialStopped(f"stopped after epoch {report.epoch}")


def test_pruned_trial_history_matches_its_first_epoch() -> None:
    configs = [_config(seed=1), _config(seed=2)]

    def on_epoch(index: int, report: EpochReport) -> None:
        if index == 0:
            raise TrialStopped()

    results = train_batch(configs, on_epoch=on_epoch)
    alone = train_trial(configs[0], on_epoch=_stop_always)
    assert results[0].stop_reason == "stopped after epoch 1"
    assert_same_result(alone, results[0])


def test_can_batch_together_rejects_mixed_architectures_and_settings() -> None:
    base = _config()
    assert can_batch_together([base, _config(seed=5, strategy="uncertainty")])
    assert not can_batch_together([base, _config(architecture="soft")])
    assert not can_batch_together([base, _config(architecture="mmoe")])
    assert not can_batch_together([base, _config(epochs=4)])
    assert not can_batch_together([base, _config(batch_size=64)])
    assert not can_batch_together([base, _config(optimizer="sgd")])
    assert not can_batch_together([base, _config(strategy="pcgrad")])  # loss vs gradient
    assert not can_batch_together([base, _config(data_seed=12)])
    # MGDA-UB batches with MGDA-UB only (it solves on the representation, not the parameters).
    upper_bound = _config(strategy="mgda", strategy_params={"upper_bound": True})
    assert can_batch_together([upper_bound, upper_bound.model_copy(update={"seed": 3})])
    assert not can_batch_together([upper_bound, _config(strategy="mgda")])
    assert not can_batch_together([_config(strategy="gradnorm", architecture="soft")])
    with pytest.raises(ConfigError):
        train_batch([base, _config(architecture="soft")])


def test_diverging_trial_ends_alone() -> None:
    configs = [_config(seed=1, epochs=2), _config(seed=2, epochs=2, lr=1e30, optimizer="sgd")]
    configs[0] = configs[0].model_copy(update={"optimizer": "sgd", "lr": 0.01})
    results = train_batch(configs)
    assert results[0].stop_reason is None and results[0].epochs_run == 2
    assert results[1].stop_reason is not None and results[1].stop_reason.startswith("diverged")
    assert results[1].epochs_run == 0


def test_plan_batches_groups_compatible_trials_and_isolates_the_rest() -> None:
    configs = [
        _config(seed=1),
        _config(architecture="soft", seed=2),
        _config(seed=3, strategy="dwa"),
        _config(strategy="mgda", strategy_params={"upper_bound": True}),
        _config(seed=4),
        _config(architecture="soft", seed=5),
    ]
    groups = plan_batches(configs, max_k=2)
    assert sorted(i for g in groups for i in g) == list(range(6))
    assert [0, 2] in groups and [4] in groups and [1, 5] in groups and [3] in groups
    for group in groups:
        assert can_batch_together([configs[i] for i in group])


def test_multi_batch_strategies_read_three_batches_per_step_and_batch_only_together() -> None:
    # 128 samples in batches of 16: 8 steps of one batch, or 2 full steps of three batches
    # and a last one of the 32 samples left (split in three).
    common = {"max_train_samples": 128, "batch_size": 16, "epochs": 1}
    modo = _config(strategy="modo", seed=1, **common)
    sdmgrad = _config(strategy="sdmgrad", strategy_params={"lambda_": 0.5}, seed=2, **common)
    assert BatchedRun([modo]).steps_per_epoch == 3
    assert BatchedRun([_config(strategy="pcgrad", **common)]).steps_per_epoch == 8
    assert not can_batch_together([modo, _config(strategy="mgda", **common)])
    _check_equivalence([modo, sdmgrad])
