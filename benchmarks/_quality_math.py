"""The pure parts of benchmarks/search_quality.py: the weight grid, spreads over seeds, Δm%
aggregation, Pareto fronts and the 2-D hypervolume. No training, no I/O."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mtl_core.metrics_delta import delta_m

Metrics = Mapping[str, float]
Point = tuple[float, float]


def log_grid(lo: float, hi: float, points: int) -> list[float]:
    """``points`` values from ``lo`` to ``hi`` (both included), evenly spaced in log."""
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < lo < hi, got {lo=}, {hi=}")
    if points < 2:
        raise ValueError(f"a grid needs at least 2 points, got {points=}")
    step = (math.log(hi) - math.log(lo)) / (points - 1)
    values = [math.exp(math.log(lo) + i * step) for i in range(points)]
    values[-1] = hi  # exp(log(hi)) may miss hi by an ulp
    return values


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation of a quantity over seeds (std 0 for one seed)."""

    mean: float
    std: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:+.2f} ± {self.std:.2f}" if self.n > 1 else f"{self.mean:+.2f}"


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise ValueError("spread of no values")
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return Spread(statistics.fmean(values), std, len(values))


def mean_metrics(runs: Sequence[Metrics]) -> dict[str, float]:
    """Each task's metric averaged over ``runs`` (every run names the same tasks)."""
    if not runs:
        raise ValueError("mean of no runs")
    return {task: statistics.fmean(run[task] for run in runs) for task in runs[0]}


def delta_m_spread(
    runs: Sequence[Metrics], baselines: Metrics, higher_is_better: Mapping[str, bool]
) -> Spread:
    """Δm% of each run (one per seed) against ``baselines``, as mean ± std over the runs."""
    return spread([delta_m(run, baselines, higher_is_better) for run in runs])


def within_noise(a: Spread, b: Spread) -> bool:
    """Whether two means differ by less than the larger of their seed standard deviations.

    A plain rule, stated in the report; with 3 seeds it is about a one-sigma band.
    """
    return abs(a.mean - b.mean) <= max(a.std, b.std)


def oriented(metrics: Metrics, higher_is_better: Mapping[str, bool]) -> Point:
    """The two tasks' metrics as a point to maximise (a lower-is-better metric negated)."""
    if len(higher_is_better) != 2:
        raise ValueError(f"a 2-D point needs two tasks, got {list(higher_is_better)}")
    a, b = ((1.0 if up else -1.0) * float(metrics[t]) for t, up in higher_is_better.items())
    return a, b


def pareto_front(points: Sequence[Point]) -> list[int]:
    """Indices of the points no other point dominates (maximising both coordinates), sorted
    by the first coordinate. Of equal points only the first is kept."""
    front: list[int] = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (px >= x and py >= y) and ((px, py) != (x, y) or j < i)
            for j, (px, py) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i])


def hypervolume_2d(points: Sequence[Point], reference: Point) -> float:
    """The area dominated by ``points`` and dominating ``reference`` (maximising both).

    Points not better than the reference in both coordinates add nothing.
    """
    rx, ry = reference
    inside = [(x, y) for x, y in points if x > rx and y > ry]
    front = [inside[i] for i in pareto_front(inside)]
    area = 0.0
    # Sorted by x ascending along a front means y descending: sweep from the largest x.
    previous_y = ry
    for x, y in reversed(front):
        area += (x - rx) * (y - previous_y)
        previous_y = y
    return area


def worst_corner(points: Sequence[Point]) -> Point:
    """The reference point of a hypervolume: each coordinate's worst value among ``points``."""
    if not points:
        raise ValueError("no points")
    return min(p[0] for p in points), min(p[1] for p in points)
