"""BatchSizer: K per kind of trial."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import mtl_core.batched
from mtl_core.config import TrialConfig
from mtl_core.experiments import get_experiment
from mtlsearch.worker.jobs import Job
from mtlsearch.worker.sizing import BatchSizer


def test_auto_batch_size_is_estimated_per_architecture_batch_size_and_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    estimated: list[TrialConfig] = []

    def estimate(experiment: object, config: TrialConfig, *args: object, **kwargs: object) -> int:
        estimated.append(config)
        return len(estimated)

    monkeypatch.setattr(mtl_core.batched, "auto_batch_size", estimate)
    study = SimpleNamespace(experiment=get_experiment("synthetic"))

    def job(**config: object) -> Job:
        trial_config = TrialConfig(experiment="synthetic", **config)
        return Job(study, None, trial_config, 2, row_id=1)  # type: ignore[arg-type]

    runner = BatchSizer("auto", "cpu", lambda job: None)
    assert runner.slots_for(job()) == 1
    # The synthetic experiment's defaults (hard sharing, batch size 128): the same estimate.
    assert runner.slots_for(job(architecture="hard", batch_size=128, lr=1e-2)) == 1
    assert runner.slots_for(job(architecture="mmoe")) == 2
    assert runner.slots_for(job(architecture="mmoe", architecture_params={"num_experts": 8})) == 3
    assert runner.slots_for(job(batch_size=32)) == 4
    assert runner.slots_for(job(max_train_samples=100)) == 5
    assert runner.slots_for(job(architecture="mmoe")) == 2
    assert len(estimated) == 5


def test_a_fixed_k_is_used_and_a_trial_without_a_batched_form_trains_alone() -> None:
    study = SimpleNamespace(experiment=get_experiment("synthetic"))
    sizer = BatchSizer(8, "cpu", lambda job: None)
    plain = Job(study, None, TrialConfig(experiment="synthetic"), 2, 1)  # type: ignore[arg-type]
    assert sizer.k_for(plain) == 8
    # PCGrad reads the shared parameters, which soft sharing has none of: it trains alone.
    soft = TrialConfig(experiment="synthetic", strategy="pcgrad", architecture="soft")
    assert sizer.k_for(Job(study, None, soft, 2, 1)) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize("k", [0, -1, "many", 2.5])
def test_k_must_be_a_positive_integer_or_auto(k: object) -> None:
    with pytest.raises(ValueError, match="k must be an integer >= 1 or 'auto'"):
        BatchSizer(k, "cpu", lambda job: None)  # type: ignore[arg-type]
