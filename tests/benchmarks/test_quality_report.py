"""The report of benchmarks/search_quality.py: tables and a plain reading from the numbers."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _quality_report import (
    Confirmed,
    ExperimentResult,
    Row,
    confirmation_table,
    document,
    plain_reading,
    table,
)

DIRECTIONS = {"income": True, "hours": False}


def result() -> ExperimentResult:
    def runs(income: float, hours: float) -> list[dict[str, float]]:
        return [{"income": income + d, "hours": hours - 10 * d} for d in (-0.01, 0.0, 0.01)]

    rows = [
        Row("strategy:fixed (uniform)", "strategy", runs(0.70, 8.0), runs(0.70, 8.0), 5, 36.0),
        Row("strategy:dwa", "strategy", runs(0.72, 8.0), runs(0.71, 8.0), 5, 36.0),
        Row("grid best (val)", "grid", runs(0.90, 8.0), runs(0.89, 8.0), 315, 900.0),
        # Best on test, not on validation: the reading must not pick it. Its metrics are the
        # confirmed best's (validation Δm% -2.78); its search's luckiest trial said +6.00.
        Row(
            "TPE weights, pruner none, K=1",
            "study",
            runs(0.85, 8.0),
            runs(0.95, 7.0),
            60,
            90.0,
            confirmed=Confirmed(
                search_val=[5.0, 6.0, 7.0],
                uniform_val=[-3.0, -2.9, -3.1],
                uniform_test=[-3.5, -3.4, -3.6],
                verdicts=["within_noise", "better", "within_noise"],
                trial_epochs=63,
                cpu_s=72.0,
                run_s=100.0,
                runs=36,
            ),
        ),
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


def test_a_study_reports_its_confirmed_best_and_the_search_compute_alone() -> None:
    line = next(x for x in table(result()).splitlines() if x.startswith("| TPE weights"))
    # The confirmed means (val Δm% -2.78), not the search's +6.00; the search's compute only
    # (60 trial-epochs, 90 s), the confirmation's 63 and 72 s not added in.
    assert "| -2.78 ± " in line and "+6.00" not in line
    assert "| 60 | 0.025 |" in line


def test_confirmation_table_sets_the_luckiest_trial_beside_the_confirmed_best() -> None:
    lines = confirmation_table(result()).splitlines()
    assert len(lines) == 3  # head, rule, the one study
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:3] == ["TPE weights, pruner none, K=1", "+6.00 ± 1.00", "-2.78 ± 1.18"]
    assert cells[4] == "-3.00 ± 0.10"  # uniform weights at the confirmation seeds
    assert cells[6] == "better 1, within_noise 2"
    assert cells[7:] == ["63", "0.02", "100", "36 (0 failed)"]  # its own compute


def test_no_confirmation_table_without_studies() -> None:
    r = result()
    r.rows = [row for row in r.rows if row.group != "study"]
    assert confirmation_table(r) == ""
    assert "Confirmation of the studies" not in document([r], "x", "m", "now", {})


def test_plain_reading_chooses_on_validation_and_names_the_gap() -> None:
    lines = plain_reading(result())
    assert lines[0].startswith("Best by validation Δm%: **grid best (val)**")
    uniform_vs_grid = next(line for line in lines if "uniform weights" in line)
    assert "more than the seed noise" in uniform_vs_grid
    study = next(line for line in lines if line.startswith("TPE weights, pruner none, K=1"))
    assert "confirmed validation Δm% -2.78 ± 1.18" in study
    assert "the search's own best trial said +6.00 ± 1.00" in study
    assert "the search took 0.19x the grid's trial-epochs" in study
    assert "its confirmation another 0.20x" in study  # 63 / 315
    assert "against uniform weights at the same seeds: better 1, within_noise 2" in study
    overstated = next(line for line in lines if "minus its confirmed best's" in line)
    assert "+8.78 points on average over the study kinds" in overstated
    assert overstated.endswith(
        "every study (per task for a multi-objective one): better 1, within_noise 2."
    )
    assert any("2 of them were model-guided" in line for line in lines)


def test_document_names_command_and_machine_per_experiment() -> None:
    text = document([result()], "python x.py", "a machine", "now", {"total wall time": "1 s"})
    section = text.split("## adult_mixed", 1)[1]
    assert "Command: `python x.py`" in section and "Machine: a machine" in section
    assert "No plot" in section or "![adult_mixed" in section
