"""`Population`: exploit/explore between epochs of one batched run, its records, its seeding."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from mtl_core.batched import BatchedRun
from mtl_core.batched.population import Population
from mtl_core.trainer import train_trial
from tests.mtl_core.batched._helpers import assert_same_result, synthetic_config

WEIGHTS = [0.2, 0.5, 1.0, 3.0]


def _run(num: int = 4, epochs: int = 4) -> BatchedRun:
    configs = [
        synthetic_config(
            epochs=epochs, seed=seed, weights={"regression": 1.0, "classification": WEIGHTS[seed]}
        )
        for seed in range(num)
    ]
    return BatchedRun(configs, tags=[f"trial{seed}" for seed in range(num)])


def _log(run: BatchedRun, slot: int) -> dict[str, Any]:
    state = run.slots[slot]
    assert state is not None and state.population is not None
    return state.population


def _halve(weights: dict[str, float], generator: torch.Generator) -> dict[str, float]:
    factor = float(torch.rand(1, generator=generator)) + 0.5
    return {**weights, "classification": weights["classification"] * factor}


def _train(seed: int) -> tuple[list[Any], list[Any]]:
    """Four members, exploit/explore after epochs 1 and 2, scored by -regression loss."""
    run = _run()
    population = Population(run, run.occupied(), 0.25, torch.Generator().manual_seed(seed), str)
    steps, finished = [], []
    while run.occupied():
        reports = run.run_epoch()
        if reports and reports[0].report.epoch < 3:
            scores = {r.slot: -r.report.train_loss["regression"] for r in reports}
            steps.append(population.step(scores, _halve))
        run.finish_completed()
        finished += run.pop_finished()
    records = [f.result.population for f in sorted(finished, key=lambda f: f.slot)]
    assert len(records) == 4 and any(record and record["lineage"] for record in records)
    return steps, records


def test_the_worst_copy_the_best_and_the_records_say_so() -> None:
    run = _run()
    population = Population(run, run.occupied(), 0.25, torch.Generator().manual_seed(0), str)
    reports = run.run_epoch()
    scores = {r.slot: float(r.slot) for r in reports}  # slot 3 best, slot 0 worst
    (pair,) = population.step(scores, _halve)
    assert pair == (3, 0)
    for stacked in run.params.values():
        torch.testing.assert_close(stacked[0], stacked[3], rtol=0, atol=0)
    log = _log(run, 0)
    assert log["lineage"] == [{"epoch": 1, "source": "trial3"}]
    assert [entry["epoch"] for entry in log["trajectory"]] == [0, 1]
    assert log["trajectory"][0]["weights"]["classification"] == WEIGHTS[0]
    moved = log["trajectory"][1]["weights"]["classification"]
    assert moved != WEIGHTS[3] and 0.5 * WEIGHTS[3] <= moved <= 1.5 * WEIGHTS[3]
    assert run.fixed_weights[0, 1].item() == pytest.approx(moved)
    untouched = _log(run, 2)
    assert untouched["lineage"] == [] and len(untouched["trajectory"]) == 1
    assert run.stop(0, "stopped by the test").result.population == log


def test_the_same_generator_seed_gives_the_same_trajectories() -> None:
    assert _train(7) == _train(7)
    assert _train(7)[1] != _train(8)[1]


def test_a_population_of_one_is_the_plain_trial() -> None:
    config = synthetic_config(epochs=3, seed=2)
    run = BatchedRun([config], tags=["only"])
    population = Population(run, [0], 0.5, torch.Generator().manual_seed(0), str)
    finished = []
    while run.occupied():
        reports = run.run_epoch()
        assert population.step({r.slot: 0.0 for r in reports}, _halve) == []
        run.finish_completed()
        finished += run.pop_finished()
    (only,) = finished
    assert_same_result(train_trial(config), only.result, tol=0.0)
    assert only.result.population == {
        "trajectory": [{"epoch": 0, "weights": dict(only.result.config.weights)}],
        "lineage": [],
        "epochs": 3,
    }


def test_a_quantile_outside_its_range_is_refused() -> None:
    with pytest.raises(ValueError, match="quantile must be in"):
        Population(_run(2), [0, 1], 0.75, torch.Generator(), str)
