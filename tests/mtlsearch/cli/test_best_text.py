"""`mtlsearch best --format text` names the best trial's architecture with its parameters."""

from __future__ import annotations

from mtlsearch.cli._best_text import best_text


def record(architecture: str | None, params: dict[str, object]) -> dict[str, object]:
    return {
        "number": 7,
        "strategy": "fixed",
        "weights_normalised": {"left": 1.0, "right": 1.0},
        "values": [0.9],
        "val_metrics": {"left": 0.95, "right": 0.94},
        "config": {"architecture": architecture, "architecture_params": params},
    }


def test_the_architecture_and_its_parameters_follow_the_trial_line() -> None:
    lines = best_text(record("ple", {"levels": 2, "shared_experts": 1})).splitlines()
    assert lines[0].startswith("trial #7: strategy fixed")
    assert lines[1] == "  architecture: ple (levels=2, shared_experts=1)"


def test_an_architecture_without_parameters_and_a_record_without_one() -> None:
    assert "  architecture: hard" in best_text(record("hard", {})).splitlines()
    assert "architecture" not in best_text(record(None, {}))
