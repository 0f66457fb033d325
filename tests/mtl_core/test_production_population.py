"""`build_loss_from_best` on a population member's record: the fixed weights follow its
trajectory, by epoch or as a fraction of the production run."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from mtl_core import ConfigError, build_loss_from_best
from mtl_core.production import MultiTaskLoss
from mtl_core.weighting.dwa import DWA


def member(
    steps: list[tuple[int, dict[str, float]]],
    epochs: int = 10,
    strategy: str = "fixed",
    weights: dict[str, float] | None = None,
) -> dict[str, Any]:
    """A trial record whose fixed weights changed at each step's epoch (config: `weights`,
    default the last, as population-based training leaves them)."""
    return {
        "config": {"strategy": strategy, "weights": weights or steps[-1][1], "epochs": epochs},
        "strategy_weights": {"a": 1.5, "b": 0.5},
        "population": {
            "trajectory": [{"epoch": e, "weights": w} for e, w in steps],
            "lineage": [{"epoch": e, "source": 7} for e, _ in steps[1:]],
            "epochs": epochs,
        },
    }


W0, W1, W2 = {"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 0.5}, {"a": 0.25, "b": 4.0}
RECORD = member([(0, W0), (4, W1), (8, W2)])


def applied(loss: MultiTaskLoss) -> list[float]:
    """The weights one step applies: the gradient of the fixed sum on one parameter per task."""
    theta = nn.Parameter(torch.zeros(2))
    loss.backward({"a": theta[0], "b": theta[1]}, shared_parameters=[theta])
    assert theta.grad is not None
    return theta.grad.tolist()


def per_epoch(loss: MultiTaskLoss, epochs: int) -> list[list[float]]:
    """The weights of each of ``epochs`` epochs, one `epoch_end` after each."""
    seen = []
    for _ in range(epochs):
        seen.append(applied(loss))
        loss.epoch_end()
    return seen


def test_by_epoch_the_weights_switch_after_the_trajectorys_epochs() -> None:
    weights = per_epoch(build_loss_from_best(RECORD), 10)
    expected = [[1.0, 2.0]] * 4 + [[3.0, 0.5]] * 4 + [[0.25, 4.0]] * 2
    assert weights == expected


@pytest.mark.parametrize(
    ("epochs", "switches"),
    [(5, (2, 4)), (20, (8, 16)), (3, (1, 2))],  # 4/10 × 3 = 1.2 → 1, 8/10 × 3 = 2.4 → 2
)
def test_as_a_fraction_the_weights_switch_at_the_same_share_of_the_run(
    epochs: int, switches: tuple[int, int]
) -> None:
    loss = build_loss_from_best(RECORD, trajectory="fraction", epochs=epochs)
    first, second = switches
    expected = [[1.0, 2.0]] * first + [[3.0, 0.5]] * (second - first)
    expected += [[0.25, 4.0]] * (epochs - second)
    assert per_epoch(loss, epochs) == expected


def test_study_epochs_that_round_to_one_production_epoch_keep_the_later_weights() -> None:
    record = member([(0, W0), (4, W1), (5, W2)])  # 4/10 × 2 and 5/10 × 2 both round to 1
    loss = build_loss_from_best(record, trajectory="fraction", epochs=2)
    assert per_epoch(loss, 2) == [[1.0, 2.0], [0.25, 4.0]]


def test_a_dynamic_strategy_follows_the_trajectory_and_still_reads_its_losses() -> None:
    loss = build_loss_from_best(member([(0, W0), (1, W1)], strategy="dwa"))
    assert loss.fixed_weights.tolist() == [1.0, 2.0]
    with pytest.raises(ConfigError, match="strategy 'dwa' learns from each epoch's mean"):
        loss.epoch_end()
    assert loss.epochs_done == 0 and loss.fixed_weights.tolist() == [1.0, 2.0]
    loss.epoch_end({"a": 1.0, "b": 2.0})
    assert loss.epochs_done == 1 and loss.fixed_weights.tolist() == [3.0, 0.5]
    dwa = loss.strategy.members["dwa"]
    assert isinstance(dwa, DWA) and dwa.last.tolist() == [[1.0, 2.0]]  # DWA saw the epoch's losses


def test_effective_weights_freeze_the_last_weights_the_member_trained_with() -> None:
    # Explored after its last epoch (10): those weights, config.weights, never trained.
    record = member([(0, W0), (4, W1), (10, W2)])
    loss = build_loss_from_best(record, effective_weights=True)
    frozen = [3.0 * 1.5, 0.5 * 0.5]  # trajectory's weights of epoch 4 on × strategy_weights
    assert per_epoch(loss, 3) == [frozen] * 3
    assert loss.strategy.names == ["fixed"]


def test_a_record_without_population_keeps_its_config_weights() -> None:
    record = {"config": {"strategy": "fixed", "weights": W1, "epochs": 3}, "population": None}
    assert per_epoch(build_loss_from_best(record), 3) == [[3.0, 0.5]] * 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trajectory": "fraction"}, "pass epochs=<your run's planned epochs>, got epochs=None"),
        ({"trajectory": "linear"}, "trajectory must be 'epoch' or 'fraction', got 'linear'"),
        ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_loss_from_best(RECORD, **kwargs)


def _with(population: Any) -> dict[str, Any]:
    return {**RECORD, "population": population}


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (_with({"trajectory": []}), "population has no 'trajectory' list"),
        (_with([1, 2]), "population has no 'trajectory' list"),
        (member([(1, W0), (4, W1)]), r"trajectory\[0\] has epoch 1: .* from 0"),
        (member([(0, W0), (4, W1), (4, W2)]), r"trajectory\[2\] has epoch 4: .* before: 4"),
        (member([(0, W0), (2, {"a": 1.0})], weights=W0), r"trajectory\[1\] must give the"),
        (member([(0, {**W0, "c": 1.0}), (2, W1)]), r"trajectory\[0\] must give the weight"),
        (member([(0, W0), (2, {"a": -1.0, "b": 1.0})]), r"weight of 'a' must be finite and >= 0"),
        (member([(0, W0), (2, {"a": float("nan"), "b": 1.0})]), "weight of 'a' must be finite"),
    ],
)
def test_a_malformed_trajectory_is_named(record: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_loss_from_best(record)


def test_fraction_needs_the_study_trials_planned_epochs() -> None:
    record = _with({**RECORD["population"], "epochs": None})
    build_loss_from_best(record)  # by epoch they are not needed
    with pytest.raises(ConfigError, match=r"population\.epochs must be an integer >= 1, got None"):
        build_loss_from_best(record, trajectory="fraction", epochs=5)


def test_a_weights_schedule_must_run_forward_over_known_tasks() -> None:
    with pytest.raises(ConfigError, match=r"weights_schedule\[1\] starts at epoch 0"):
        MultiTaskLoss(["a", "b"], weights_schedule=[(0, W0), (0, W1)])
    with pytest.raises(ConfigError, match=r"weights_schedule\[0\] given for unknown task 'c'"):
        MultiTaskLoss(["a", "b"], weights_schedule=[(0, {"c": 1.0})])
