"""PBT's exploit and explore inside one batched pass: `copy_slot` makes a slot continue another
bit for bit (every registered strategy), and `set_fixed_weights` changes what a slot trains on."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
import torch

from mtl_core.batched import BatchedRun, SlotReport
from mtl_core.batched.population import copy_slot, set_fixed_weights
from mtl_core.config import TrialConfig
from mtl_core.results import EpochReport
from mtl_core.weighting import list_strategies
from tests.mtl_core.batched._helpers import synthetic_config

#: Trial B's settings besides its seed: every per-slot hyper-parameter differs from A's, so a
#: copy that missed one shows.
OTHER = {
    "weights": {"regression": 0.3, "classification": 2.0},
    "lr": 5e-3,
    "weight_decay": 1e-4,
    "grad_clip": 0.5,
}


def _trial(strategy: str, seed: int, **overrides: Any) -> TrialConfig:
    """A three-epoch trial (run epoch by epoch with `BatchedRun.run_epoch`, which finishes
    no trial that completed its epochs)."""
    return synthetic_config(strategy=strategy, seed=seed, epochs=3, **overrides)


def _row(tensor: torch.Tensor, slot: int) -> torch.Tensor:
    return tensor[slot].detach()


def _slot_state(run: BatchedRun, slot: int) -> dict[str, torch.Tensor]:
    """Everything of ``slot`` in the stacked model and the run's optimizer, by name."""
    optimizer = run.optimizer
    state = {f"param {n}": _row(t, slot) for n, t in run.params.items()}
    state |= {f"buffer {n}": _row(t, slot) for n, t in run.buffers.items()}
    state |= {f"optimizer param {i}": _row(t, slot) for i, t in enumerate(optimizer.params)}
    state |= {f"exp_avg {i}": _row(t, slot) for i, t in enumerate(optimizer.exp_avg)}
    state |= {f"exp_avg_sq {i}": _row(t, slot) for i, t in enumerate(optimizer.exp_avg_sq)}
    for name in ("step_count", "has_momentum", "lr", "weight_decay"):
        state[f"optimizer {name}"] = _row(getattr(optimizer, name), slot)
    state["clip"] = _row(run.clip, slot)
    state["fixed_weights"] = _row(run.fixed_weights, slot)
    return state


def _assert_same_state(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> None:
    assert left.keys() == right.keys()
    for name, value in left.items():
        assert torch.equal(value, right[name]), f"{name} differs"


def _by_slot(reports: list[SlotReport]) -> dict[int, EpochReport]:
    return {r.slot: r.report for r in reports}


def _assert_same_report(left: EpochReport, right: EpochReport) -> None:
    """Bitwise: the same epoch, train losses, weights and validation metrics."""
    assert left.epoch == right.epoch
    for field in ("train_loss", "weights", "val_metrics"):
        assert getattr(left, field) == getattr(right, field), field


def _assert_copy_continues_source(a: TrialConfig, b: TrialConfig) -> None:
    """Run R = [A, B] one epoch, copy slot 0 onto slot 1, run R on; reference S = [A, A].

    After the copy, slot 1 of R reports and holds what slot 0 of R does and what slot 1 of S
    does, bit for bit, for the trial's remaining epochs (the third epoch reads what the
    strategies carry over epochs, e.g. DWA's loss history).
    """
    run = BatchedRun([a, b], tags=["A", "B"])
    reference = BatchedRun([a, a], data=run.data)
    first = _by_slot(run.run_epoch())
    reference.run_epoch()
    # Slot 1 trained B for an epoch: it differs from A before the copy.
    assert first[1].train_loss != first[0].train_loss

    copy_slot(run, 0, 1)
    assert a.epochs is not None
    later = []
    for _ in range(a.epochs - 1):
        reports = _by_slot(run.run_epoch())
        expected = _by_slot(reference.run_epoch())
        _assert_same_report(reports[1], reports[0])
        _assert_same_report(reports[1], expected[1])
        _assert_same_report(reports[0], expected[0])  # the source is untouched
        later.append(reports[1].train_loss)
    _assert_same_state(_slot_state(run, 1), _slot_state(run, 0))
    _assert_same_state(_slot_state(run, 1), _slot_state(reference, 1))
    copied, source = run.slots[1], run.slots[0]
    assert copied is not None and source is not None
    assert torch.equal(copied.ctx.generator.get_state(), source.ctx.generator.get_state())
    assert copied.ctx.generator is not source.ctx.generator
    assert copied.config == source.config and copied.epoch == source.epoch == a.epochs
    # The target is still its own trial: its tag, and its history from B's first epoch on.
    assert copied.tag == "B"
    assert [r.train_loss for r in copied.history] == [first[1].train_loss, *later]


@pytest.mark.parametrize("strategy", list_strategies())
def test_copied_slot_continues_exactly_as_its_source(strategy: str) -> None:
    _assert_copy_continues_source(_trial(strategy, 1), _trial(strategy, 2, **OTHER))


def test_copy_slot_carries_host_side_and_nested_state() -> None:
    """Nash-MTL's host-side step counter (a solve every 3 steps); CR-MOGM whose base
    differs per slot (its own nested strategy); the proportional alternating schedule."""
    nash = {"strategy_params": {"update_weights_every": 3}}
    _assert_copy_continues_source(_trial("nash_mtl", 1, **nash), _trial("nash_mtl", 2, **nash))
    schedule = {"schedule": "alternating", "schedule_params": {"mode": "proportional"}}
    other_base = {"base": "cagrad", "alpha": 0.5}
    _assert_copy_continues_source(
        _trial("cr_mogm", 1, **schedule),
        _trial("cr_mogm", 2, strategy_params=other_base, **schedule),
    )


def test_copy_slot_onto_a_trial_at_another_epoch() -> None:
    """The target takes the source's epoch: it reads that epoch's data order from then on."""
    a, b = _trial("dwa", 1), _trial("dwa", 2, **OTHER)
    run = BatchedRun([a], num_slots=2)
    run.run_epoch()
    run.refill(1, b)
    run.run_epoch()  # A's second epoch, B's first
    copy_slot(run, 0, 1)
    copied = run.slots[1]
    assert copied is not None and copied.epoch == 2
    reports = _by_slot(run.run_epoch())
    _assert_same_report(reports[1], reports[0])
    _assert_same_state(_slot_state(run, 1), _slot_state(run, 0))


def test_set_fixed_weights_changes_what_the_slot_trains_on() -> None:
    a = _trial("fixed", 1)
    run = BatchedRun([a, a])
    run.run_epoch()
    weights = {"regression": 0.25, "classification": 3.0}
    set_fixed_weights(run, 1, weights)
    slot = run.slots[1]
    assert slot is not None
    assert slot.config.weights == weights
    assert run.fixed_weights[1].tolist() == [0.25, 3.0]
    second = _by_slot(run.run_epoch())
    # Slot 0 is the unchanged copy of the same trial.
    assert second[1].train_loss != second[0].train_loss
    assert any(not torch.equal(p[0], p[1]) for p in run.params.values())


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"regression": 1.0, "classification": -0.5}, "-0.5"),
        ({"regression": math.nan, "classification": 1.0}, "nan"),
        ({"regression": 1.0, "classification": math.inf}, "inf"),
        ({"regression": 1.0, "classification": 1.0, "depth": 1.0}, "'depth'"),
        ({"regression": 1.0}, "missing classification"),
        ({"regression": 0.0, "classification": 0.0}, "at least one task weight must be > 0"),
    ],
)
def test_set_fixed_weights_rejects_bad_weights(weights: dict[str, float], message: str) -> None:
    run = BatchedRun([_trial("fixed", 1)])
    before = run.fixed_weights.clone()
    with pytest.raises(ValueError, match=re.escape(message)):
        set_fixed_weights(run, 0, weights)
    assert torch.equal(run.fixed_weights, before)


def test_copy_slot_refuses_free_and_unknown_slots() -> None:
    a = _trial("fixed", 1)
    run = BatchedRun([a], num_slots=3)
    with pytest.raises(ValueError, match="target slot 2 is free"):
        copy_slot(run, 0, 2)
    with pytest.raises(ValueError, match="source slot 1 is free"):
        copy_slot(run, 1, 0)
    with pytest.raises(ValueError, match=r"target slot must be in 0\.\.2, got 3"):
        copy_slot(run, 0, 3)
    with pytest.raises(ValueError, match="slot 2 is free"):
        set_fixed_weights(run, 2, {"regression": 1.0, "classification": 1.0})
    run.refill(1, a)
    with pytest.raises(ValueError, match="different slots, got 1 twice"):
        copy_slot(run, 1, 1)


def test_copy_slot_refuses_slots_of_different_strategies() -> None:
    run = BatchedRun([_trial("fixed", 1), _trial("dwa", 2)])
    with pytest.raises(ValueError, match="different strategies \\('fixed' and 'dwa'\\)"):
        copy_slot(run, 0, 1)
