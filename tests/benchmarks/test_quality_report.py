"""The report of benchmarks/search_quality.py: tables and a plain reading from the numbers."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _quality_report import ExperimentResult, Row, document, plain_reading, table

DIRECTIONS = {"income": True, "hours": False}


def result() -> ExperimentResult:
    def runs(income: float, hours: float) -> list[dict[str, float]]:
        return [{"income": income + d, "hours": hours - 10 * d} for d in (-0.01, 0.0, 0.01)]

    rows = [
        Row("strategy:fixed (uniform)", "strategy", runs(0.70, 8.0), runs(0.70, 8.0), 5, 36.0),
        Row("strategy:dwa", "strategy", runs(0.72, 8.0), runs(0.71, 8.0), 5, 36.0),
        Row("grid best (val)", "grid", runs(0.90, 8.0), runs(0.89, 8.0), 315, 900.0),
        # Best on test, not on validation: the reading must not pick it.
        Row("TPE weights, pruner none, K=1", "study", runs(0.85, 8.0), runs(0.95, 7.0), 60, 90.0),
    ]
    return ExperimentResult(
        name="adult_mixed",
        directions=DIRECTIONS,
        baselines_val={"income": 0.9, "hours": 8.0},
        baselines_test={"income": 0.9, "hours": 8.0},
        rows=rows,
        grid_ratios=[0.1, 1.0],
        grid_val=[{"income": 0.9, "hours": 9.0}, {"income": 0.7, "hours": 7.0}],
        grid_test=[{"income": 0.9, "hours": 9.0}, {"income": 0.7, "hours": 7.0}],
        grid_front=[0, 1],
        sizes="epochs 5",
        n_trials=12,
        epochs=5,
    )


def test_table_has_one_line_per_row_with_directions() -> None:
    text = table(result())
    lines = text.splitlines()
    assert lines[0].startswith("| approach | test income ↑ | test hours ↓ |")
    assert len(lines) == 2 + 4
    grid_line = next(line for line in lines if line.startswith("| grid best (val) |"))
    # Δm% on validation of the grid's pick: income -0.0% on average, hours 0: "+0.00 ± ...".
    assert "| 315 | 0.25 |" in grid_line  # trial-epochs, CPU-hours (900 s)


def test_plain_reading_chooses_on_validation_and_names_the_gap() -> None:
    lines = plain_reading(result())
    assert lines[0].startswith("Best by validation Δm%: **grid best (val)**")
    uniform_vs_grid = next(line for line in lines if "uniform weights" in line)
    assert "more than the seed noise" in uniform_vs_grid
    study = next(line for line in lines if line.startswith("TPE weights, pruner none, K=1"))
    assert "0.19x the grid's trial-epochs" in study
    assert any("2 of them were model-guided" in line for line in lines)


def test_document_names_command_and_machine_per_experiment() -> None:
    text = document([result()], "python x.py", "a machine", "now", {"total wall time": "1 s"})
    section = text.split("## adult_mixed", 1)[1]
    assert "Command: `python x.py`" in section and "Machine: a machine" in section
    assert "No plot" in section or "![adult_mixed" in section
