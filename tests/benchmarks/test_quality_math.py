"""The pure parts of benchmarks/search_quality.py: grid, Δm% aggregation, fronts, hypervolume."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import itertools

from _quality_math import (
    delta_m_spread,
    hypervolume_2d,
    log_grid,
    mean_metrics,
    oriented,
    pareto_front,
    spread,
    within_noise,
    worst_corner,
)


def test_log_grid_spans_the_range_evenly_in_log() -> None:
    grid = log_grid(1e-3, 10.0, 21)
    assert len(grid) == 21
    assert grid[0] == pytest.approx(1e-3) and grid[-1] == 10.0
    ratios = [b / a for a, b in itertools.pairwise(grid)]
    assert all(r == pytest.approx(10 ** (4 / 20)) for r in ratios)
    assert grid[10] == pytest.approx(0.1)


@pytest.mark.parametrize(("lo", "hi", "points"), [(0, 1, 5), (2, 1, 5), (1, 2, 1)])
def test_log_grid_rejects_bad_arguments(lo: float, hi: float, points: int) -> None:
    with pytest.raises(ValueError):
        log_grid(lo, hi, points)


def test_delta_m_spread_over_seeds_respects_directions() -> None:
    directions = {"income": True, "hours": False}
    baselines = {"income": 0.8, "hours": 10.0}
    runs = [
        {"income": 0.88, "hours": 10.0},  # +10% on income, 0 on hours: Δm 5
        {"income": 0.80, "hours": 9.0},  # 0 on income, MAE 10% lower: Δm 5
        {"income": 0.80, "hours": 12.0},  # MAE 20% higher: Δm -10
    ]
    result = delta_m_spread(runs, baselines, directions)
    assert result.n == 3
    assert result.mean == pytest.approx(0.0)
    assert result.std == pytest.approx(math.sqrt((25 + 25 + 100) / 2))
    assert mean_metrics(runs) == pytest.approx({"income": 0.8266666, "hours": 31 / 3})


def test_spread_of_one_seed_and_the_noise_rule() -> None:
    assert spread([2.0]) == spread([2.0])
    assert spread([2.0]).std == 0.0
    assert str(spread([1.0, 3.0])) == "+2.00 ± 1.41"
    assert within_noise(spread([1.0, 3.0]), spread([3.0, 3.2]))  # 1.0 apart, std 1.41
    assert not within_noise(spread([1.0, 1.2]), spread([3.0, 3.2]))
    with pytest.raises(ValueError):
        spread([])


def test_pareto_front_keeps_the_undominated_points() -> None:
    points = [(1.0, 5.0), (2.0, 4.0), (1.5, 3.0), (3.0, 1.0), (2.0, 4.0), (0.5, 0.5)]
    # (1.5, 3) is dominated by (2, 4); the repeated (2, 4) is kept once; (0.5, 0.5) by all.
    assert pareto_front(points) == [0, 1, 3]
    assert pareto_front([]) == []


def test_oriented_negates_a_lower_is_better_metric() -> None:
    point = oriented({"income": 0.9, "hours": 7.5}, {"income": True, "hours": False})
    assert point == (0.9, -7.5)
    with pytest.raises(ValueError):
        oriented({"a": 1.0}, {"a": True})


def test_hypervolume_of_a_known_front() -> None:
    front = [(1.0, 3.0), (2.0, 2.0), (3.0, 1.0)]
    # Staircase above (0, 0): 3x1 + 2x1 + 1x1 = 6.
    assert hypervolume_2d(front, (0.0, 0.0)) == pytest.approx(6.0)
    # Dominated and outside points add nothing.
    assert hypervolume_2d([*front, (1.0, 1.0), (-1.0, 9.0)], (0.0, 0.0)) == pytest.approx(6.0)
    # Above (1, 1) only (2, 2) is strictly better in both: a 1 x 1 square.
    assert hypervolume_2d(front, (1.0, 1.0)) == pytest.approx(1.0)
    assert hypervolume_2d([], (0.0, 0.0)) == 0.0
    assert worst_corner(front) == (1.0, 1.0)
