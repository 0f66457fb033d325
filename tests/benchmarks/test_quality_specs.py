"""The studies benchmarks/search_quality.py submits are valid specs, and its grid and study
weights cover the same range."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _quality_config import parse_args
from _quality_math import log_grid
from _quality_studies import Confirm, StudyKind, _cpu_seconds, study_spec
from _quality_train import Sizes, grid_weights, strategy_labelled

from mtl_core.weighting import list_strategies
from mtlsearch.search.spec import StudySpec
from mtlsearch.search.spec_checks import validate_against_experiment
from mtlsearch.search.spec_values import WeightRange

SIZES = Sizes(epochs=4, max_train_samples=1000, seeds=3, grid_points=21, weight_range=(1e-5, 10))


@pytest.mark.parametrize(
    "kind",
    [
        StudyKind("weights", "none", 1),
        StudyKind("weights", "median", 32),
        StudyKind("weights+strategy", "median", 1),
        StudyKind("multi", "none", 1),
        StudyKind("weights", "none", 32, "tpe_batch"),
        StudyKind("population", "none", 12),
    ],
    ids=lambda k: k.label,
)
def test_every_study_kind_is_a_valid_spec(kind: StudyKind) -> None:
    baselines = {"income": 0.9, "hours": 8.0}
    confirm = Confirm(top=2, seeds=4)
    spec = StudySpec.model_validate(
        study_spec("adult_mixed", kind, 2, 12, SIZES, baselines, confirm)
    )
    validate_against_experiment(spec)
    assert spec.n_trials == 12 and spec.seed == 2 and spec.pruner == kind.pruner
    assert spec.sampler == kind.sampler
    if kind.space == "population":
        # A population's answer is its best member's trajectory: not confirmed.
        assert spec.population is not None and not spec.confirmation.enabled
    else:
        # Every other study confirms its best, at the benchmark's sizes.
        assert spec.confirmation.enabled and spec.confirmation.uniform
        assert (spec.confirmation.top, spec.confirmation.seeds) == (2, 4)
    weights = spec.search_space.weights["hours"]
    assert isinstance(weights, WeightRange)
    assert (weights.lo, weights.hi) == (1e-5, 10)
    if kind.space == "multi":
        assert spec.objective.kind == "multi"
    else:
        assert spec.objective.kind == "delta_m" and spec.objective.baselines == baselines
    names = [s.name for s in spec.search_space.strategies]
    assert names == (list_strategies() if kind.space == "weights+strategy" else ["fixed"])


def test_the_strategies_search_their_declared_ranges() -> None:
    spec = StudySpec.model_validate(
        study_spec(
            "adult_mixed", StudyKind("weights+strategy", "median", 1), 2, 12, SIZES, {}, Confirm()
        )
    )
    assert all(choice.default_ranges for choice in spec.search_space.strategies)


def test_every_strategy_runs_at_every_seed_and_the_grid_spans_the_range() -> None:
    labelled = strategy_labelled("adult_mixed", SIZES)
    assert len(labelled) == len(list_strategies()) * SIZES.seeds
    assert {config.strategy for _, config in labelled} == set(list_strategies())
    assert all(config.weights == {"income": 1.0, "hours": 1.0} for _, config in labelled)
    weights = grid_weights("adult_mixed", log_grid(*SIZES.weight_range, SIZES.grid_points))
    assert weights[0] == {"income": 1.0, "hours": pytest.approx(1e-5)}
    assert weights[-1] == {"income": 1.0, "hours": 10.0}


@pytest.mark.parametrize(
    ("preset", "top", "seeds"), [([], 3, 3), (["--quick"], 2, 2), (["--full"], 3, 5)]
)
def test_presets_confirm_at_their_sizes(preset: list[str], top: int, seeds: int) -> None:
    args = parse_args([*preset, "--data-dir", str(Path(__file__).parent)])
    assert Confirm(args.confirm_top, args.confirm_seeds) == Confirm(top, seeds)
    assert Confirm(3, 3).label == "top 3 + uniform weights x 3 seeds"


def test_confirmation_needs_two_seeds_for_a_verdict() -> None:
    with pytest.raises(ValueError, match="seeds >= 2"):
        Confirm(top=3, seeds=1)
    with pytest.raises(SystemExit):
        parse_args(["--confirm-seeds", "1", "--data-dir", str(Path(__file__).parent)])


def test_a_batch_tpe_kind_is_named_apart_from_tpe() -> None:
    plain, batched = StudyKind("weights", "none", 32), StudyKind("weights", "none", 32, "tpe_batch")
    assert plain.label == "TPE weights, pruner none, K=32"
    assert batched.label == "batch TPE weights, pruner none, K=32"
    specs = [
        study_spec("adult_mixed", k, 0, 12, SIZES, {}, Confirm(top=2, seeds=2))
        for k in (plain, batched)
    ]
    assert specs[0]["name"] != specs[1]["name"]
    args = parse_args(["--sampler", "tpe_batch", "--spaces", "weights", "--pruners", "none"])
    assert (args.sampler, args.spaces, args.pruners) == ("tpe_batch", ["weights"], ["none"])


def test_the_cpu_of_a_worker_holds_its_training_process() -> None:
    """A worker trains in a process of its own: its CPU is counted with the worker's."""
    spin = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {spin!r}])",
        ]
    )
    try:
        deadline = time.monotonic() + 30
        tree = 0.0
        while parent.poll() is None and time.monotonic() < deadline:
            tree = max(tree, _cpu_seconds(parent.pid))
            time.sleep(0.05)
    finally:
        parent.kill()
    # The parent itself only waits: most of what was counted is its child's 0.3 s.
    assert tree >= 0.2, tree
