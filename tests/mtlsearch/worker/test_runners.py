"""The slot runner with real training on the `synthetic` experiment, on a SQLite file."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState

import mtl_core.batched
from mtl_core.batched import BatchedRun, SlotReport
from mtlsearch.worker.runner import SlotRunner
from storage import Database, StudyInfo, StudyRepository, StudyStatus
from tests.mtlsearch.worker.helpers import make_worker, submit, synthetic_spec

#: One learning rate that diverges in the first epoch, one that trains.
DIVERGING_LR, HEALTHY_LR = 1e12, 3e-3


def trials_of(database: Database, info: StudyInfo) -> list[optuna.trial.FrozenTrial]:
    storage = database.optuna_storage()
    return optuna.load_study(study_name=info.optuna_study_name, storage=storage).trials


def status_of(database: Database, info: StudyInfo) -> StudyStatus:
    with database.session() as session:
        return StudyRepository(session).get(info.id).status


def test_diverged_slots_of_a_batch_do_not_fail_its_healthy_study(database: Database) -> None:
    k = 8
    spec = synthetic_spec(n_trials=k, search_space={"lr": {"choices": [DIVERGING_LR, HEALTHY_LR]}})
    info = submit(database, spec)
    # A fixed worker id seeds the sampler: the same draws every run.
    make_worker(database, batch=k, max_consecutive_failures=2, worker_id="w0").run()

    trials = trials_of(database, info)
    diverging = [t for t in trials if t.params["lr"] == DIVERGING_LR]
    healthy = [t for t in trials if t.params["lr"] == HEALTHY_LR]
    # More diverged trials than the streak allows, all in the first epoch of one batch.
    assert len(diverging) >= 2 and healthy, [t.params for t in trials]
    assert all(t.state is TrialState.FAIL for t in diverging)
    assert all("NaN or infinite" in t.user_attrs["fail_reason"] for t in diverging)
    assert [t.state for t in healthy] == [TrialState.COMPLETE] * len(healthy)
    assert status_of(database, info) is not StudyStatus.FAILED


def test_a_batch_whose_trials_all_diverge_counts_once_per_epoch(database: Database) -> None:
    spec = synthetic_spec(n_trials=8, search_space={"lr": DIVERGING_LR})
    info = submit(database, spec)
    make_worker(database, batch=4, max_consecutive_failures=2).run()

    trials = trials_of(database, info)
    # The four failures of the first epoch count once: the refills make the second round.
    assert len(trials) > 4 and all(t.state is TrialState.FAIL for t in trials)
    with database.session() as session:
        row = StudyRepository(session).get(info.id)
    assert row.status is StudyStatus.FAILED
    assert row.message is not None and "trials in 2 batch epochs)" in row.message


class SmallDevice(BatchedRun):
    """A `BatchedRun` on a device that holds at most `fits` trials: more run out of memory in
    the first epoch, as CUDA does. Records K and the trial numbers of each batch it trains
    (started with, then refilled)."""

    fits = 4
    batches: list[tuple[int, list[int]]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        numbers = [slot.tag.trial.number for slot in self.slots if slot is not None]
        self.batches.append((self.num_slots, numbers))

    def run_epoch(self, *args: Any, **kwargs: Any) -> list[SlotReport]:
        if self.num_slots > self.fits:
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate 2.00 GiB for K={self.num_slots}"
            )
        return super().run_epoch(*args, **kwargs)

    def refill(self, slot: int, config: Any, tag: Any = None) -> Any:
        resolved = super().refill(slot, config, tag)
        self.batches[-1][1].append(tag.trial.number)
        return resolved


@pytest.fixture
def small_device(monkeypatch: pytest.MonkeyPatch) -> type[SmallDevice]:
    monkeypatch.setattr(SmallDevice, "batches", [])
    monkeypatch.setattr(mtl_core.batched, "BatchedRun", SmallDevice)
    return SmallDevice


def test_out_of_memory_retries_the_same_trials_at_half_the_batch(
    database: Database, small_device: type[SmallDevice]
) -> None:
    info = submit(database, synthetic_spec(n_trials=8))
    make_worker(database, batch=8).run()

    trials = trials_of(database, info)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 8  # no trial asked anew
    # The eight trials start again at K=4: four at once, the other four in the slots they free.
    assert small_device.batches == [(8, list(range(8))), (4, list(range(8)))]
    assert status_of(database, info) is StudyStatus.COMPLETED


def test_out_of_memory_alone_fails_the_trial_as_a_resource_failure(
    database: Database, small_device: type[SmallDevice]
) -> None:
    small_device.fits = 0
    info = submit(database, synthetic_spec(n_trials=4))
    make_worker(database, batch=2, max_trials=2, max_consecutive_failures=1).run()

    trials = trials_of(database, info)
    assert [k for k, _ in small_device.batches] == [2, 1, 1]
    assert [t.state for t in trials] == [TrialState.FAIL] * 2
    for trial in trials:
        reason = trial.user_attrs["fail_reason"]
        assert reason.startswith("out of memory on cpu training 1 trial (K=1, batch_size 128): ")
        assert "Tried to allocate" in reason
    # Not counted towards the streak: one counted failure would have failed the study.
    assert status_of(database, info) is StudyStatus.RUNNING


@pytest.mark.parametrize("k", [1, 4])
def test_one_runner_class_trains_every_k(
    database: Database, small_device: type[SmallDevice], k: int
) -> None:
    small_device.fits = k
    info = submit(database, synthetic_spec(n_trials=6))
    worker = make_worker(database, batch=k)
    assert type(worker.runner) is SlotRunner
    assert worker.run() == 6

    assert [t.state for t in trials_of(database, info)] == [TrialState.COMPLETE] * 6
    # BatchedRuns of K slots (refilled as trials end while the queue has jobs) for all six.
    assert {num_slots for num_slots, _ in small_device.batches} == {k}
    assert sorted(n for _, numbers in small_device.batches for n in numbers) == list(range(6))
