"""`retrain_trial`: a trial of a K-slot pass, retrained alone from its record, equals it exactly.

The records are what a worker stores (the result's resolved config, metrics through JSON,
``num_slots``), built here from a `BatchedRun` on the synthetic experiment (CPU, no data files).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mtl_core.batched import BatchedRun, SlotReport
from mtl_core.config import TrialConfig
from mtl_core.errors import ConfigError
from mtl_core.reproduce import UNKNOWN_K_NOTE, retrain_trial, trial_config_from_record
from mtl_core.results import TrialResult
from tests.utils.trials import population_record


def _config(**kwargs: object) -> TrialConfig:
    base: dict[str, object] = {"experiment": "synthetic", "epochs": 3, "max_train_samples": 256}
    base.update(kwargs)
    return TrialConfig.model_validate(base)


def _record(result: TrialResult, state: str = "complete") -> dict[str, Any]:
    """What ``GET /studies/{id}/trials/{number}`` answers for it (through JSON, as stored)."""
    record = {
        "number": 3,
        "state": state,
        "config": result.config.model_dump(mode="json"),
        "val_metrics": result.val_metrics,
        "test_metrics": result.test_metrics,
        "epochs_run": result.epochs_run,
        "seed": result.config.seed,
        "num_slots": result.num_slots,
        "strategy_weights": result.final_weights,
        "weights_trajectory": result.weights_trajectory,
    }
    loaded: dict[str, Any] = json.loads(json.dumps(record))
    return loaded


@pytest.fixture(scope="module")
def batch() -> dict[str, TrialResult]:
    """A 4-slot pass of loss-based strategies: three trials, one pruned after epoch 1, its slot
    (and the free fourth) refilled by trials that join at epoch 1 and 2; and a 3-slot pass of
    gradient strategies with a free slot."""
    gradient = BatchedRun(
        [_config(strategy="pcgrad", seed=3), _config(strategy="cagrad", seed=6)],
        num_slots=3,
        tags=["pcgrad", "cagrad"],
    )
    run = BatchedRun(
        [
            _config(strategy="dwa", seed=1),
            _config(strategy="fixed", weights={"classification": 3.0}, seed=2),
            _config(strategy="uncertainty", seed=7),
        ],
        num_slots=4,
        tags=["dwa", "pruned", "uncertainty"],
    )
    newcomers = [("rlw", _config(strategy="rlw", seed=4)), ("late", _config(seed=5, epochs=2))]

    def on_epoch(reports: list[SlotReport]) -> list[int]:
        return [r.slot for r in reports if r.tag == "pruned" and r.report.epoch == 1]

    def refill(slot: int) -> tuple[TrialConfig, object] | None:
        if not newcomers or run.reported_epochs == 0:
            return None
        tag, config = newcomers.pop(0)
        return config, tag

    done = {item.tag: item.result for item in run.run(on_epoch, refill)}
    return done | {item.tag: item.result for item in gradient.run()}


def test_every_result_carries_the_k_of_its_pass(batch: dict[str, TrialResult]) -> None:
    assert set(batch) == {"dwa", "pruned", "uncertainty", "rlw", "late", "pcgrad", "cagrad"}
    assert {batch[tag].num_slots for tag in ("dwa", "pruned", "rlw", "late")} == {4}
    assert batch["pcgrad"].num_slots == batch["cagrad"].num_slots == 3
    # One data order for a pass: its first config's seed.
    assert {batch[tag].config.data_seed for tag in ("dwa", "pruned", "rlw", "late")} == {1}
    assert batch["cagrad"].config.data_seed == 3


@pytest.mark.parametrize("tag", ["dwa", "uncertainty", "rlw", "late", "pcgrad", "cagrad"])
def test_a_trial_of_the_pass_retrains_alone_bit_for_bit(
    batch: dict[str, TrialResult], tag: str
) -> None:
    original = batch[tag]
    reproduction = retrain_trial(_record(original))
    assert reproduction.num_slots == original.num_slots and reproduction.exact_expected
    assert reproduction.note is None
    assert reproduction.result.val_metrics == original.val_metrics
    assert reproduction.result.test_metrics == original.test_metrics
    assert reproduction.result.weights_trajectory == original.weights_trajectory
    assert reproduction.identical and reproduction.differences() == {}


def test_a_pruned_trial_stops_where_it_was_stopped(batch: dict[str, TrialResult]) -> None:
    original = batch["pruned"]
    assert original.epochs_run == 1
    reproduction = retrain_trial(_record(original, state="pruned"))
    assert reproduction.result.epochs_run == 1
    assert reproduction.identical


def test_a_metric_off_in_the_last_digit_is_a_difference(batch: dict[str, TrialResult]) -> None:
    record = _record(batch["late"])
    value = record["test_metrics"]["regression"]
    record["test_metrics"]["regression"] = value + abs(value) * 1e-12
    reproduction = retrain_trial(record)
    assert not reproduction.identical
    assert list(reproduction.differences()) == ["test/regression"]


def test_a_record_without_k_is_retrained_at_k_1_and_says_so(
    batch: dict[str, TrialResult],
) -> None:
    record = _record(batch["pcgrad"]) | {"num_slots": None}
    reproduction = retrain_trial(record)
    assert reproduction.num_slots == 1 and not reproduction.exact_expected
    assert reproduction.note == UNKNOWN_K_NOTE and "K unknown" in UNKNOWN_K_NOTE


def test_a_gpu_trial_retrained_on_cpu_is_not_expected_exact(
    batch: dict[str, TrialResult],
) -> None:
    record = _record(batch["dwa"])
    record["config"]["device"] = "cuda:0"
    assert trial_config_from_record(record).device == "cuda:0"
    assert trial_config_from_record(record, device="cpu").device == "cpu"
    reproduction = retrain_trial(record)
    assert not reproduction.exact_expected
    assert reproduction.note is not None and "cuda:0" in reproduction.note


def test_records_without_a_config_or_metrics_are_clear_errors(
    batch: dict[str, TrialResult],
) -> None:
    with pytest.raises(ConfigError, match="trial 7 has no recorded config"):
        retrain_trial({"number": 7, "state": "fail", "config": None})
    running = _record(batch["dwa"], state="running") | {"val_metrics": None, "test_metrics": None}
    with pytest.raises(ConfigError, match=r"no recorded metrics \(state running\)"):
        retrain_trial(running)


def test_a_population_member_that_copied_another_is_not_retrained_from_its_config(
    batch: dict[str, TrialResult],
) -> None:
    record = _record(next(iter(batch.values())))
    record["population"] = population_record()
    with pytest.raises(ConfigError, match="trained in a population and took another trial's"):
        retrain_trial(record)
