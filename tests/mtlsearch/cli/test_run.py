"""`mtlsearch run`, in process with typer's runner (the generated `synthetic` experiment)."""

from __future__ import annotations

from pathlib import Path

import optuna
import yaml
from typer.testing import CliRunner

from mtlsearch.cli import app

runner = CliRunner()
QUICK = ["--epochs", "2", "--max-train-samples", "200"]


def test_run_prints_the_best_trial(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'run.db'}"
    args = ["run", "--experiment", "synthetic", "--trials", "3", "--db", db, *QUICK]
    result = runner.invoke(
        app, [*args, "--strategies", "fixed,dwa", "--objective", "weighted_mean"]
    )
    assert result.exit_code == 0, result.output
    assert "synthetic-local: 3 complete" in result.output
    for word in ("regression", "classification", "normalised", "rmse", "accuracy"):
        assert word in result.output
    study = optuna.load_study(study_name="synthetic-local", storage=db)
    assert len(study.trials) == 3
    assert study.user_attrs["spec"]["search_space"]["strategies"] == [
        {"name": "fixed", "params": {}, "default_ranges": False},
        {"name": "dwa", "params": {}, "default_ranges": False},
    ]


def test_run_from_a_spec_file(tmp_path: Path) -> None:
    spec = {
        "name": "from-file",
        "experiment": "synthetic",
        "n_trials": 2,
        "sampler": "random",
        "search_space": {"weights": {"classification": {"choices": [0.5, 2.0]}}},
        "objective": {"kind": "weighted_mean"},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    db = f"sqlite:///{tmp_path / 'run.db'}"
    result = runner.invoke(app, ["run", "--spec", str(path), "--db", db, *QUICK])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="from-file", storage=db)
    assert {t.params["w_classification"] for t in study.trials} <= {0.5, 2.0}
    assert study.user_attrs["spec"]["search_space"]["epochs"] == 2  # the flag overrides


def run_failing(*args: str) -> str:
    result = runner.invoke(app, ["run", *args])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") <= 2, result.output  # one line
    return result.output


def test_unknown_experiment_lists_valid(tmp_path: Path) -> None:
    out = run_failing("--experiment", "nope", "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert "unknown experiment 'nope'" in out and "synthetic" in out


def test_unknown_strategy_lists_valid(tmp_path: Path) -> None:
    out = run_failing(
        "-e", "synthetic", "--strategies", "fixed,nope", "--db", f"sqlite:///{tmp_path / 'x.db'}"
    )
    assert "search_space.strategies.1.name" in out and "'nope'" in out and "dwa" in out


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nexperiment: [synthetic\n")
    out = run_failing("--spec", str(path))
    assert "invalid YAML" in out and "line" in out


def test_bad_spec_field_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "experiment": "synthetic",
                "search_space": {"weights": {"classification": {"lo": 2, "hi": 1}}},
            }
        )
    )
    out = run_failing("--spec", str(path))
    assert "search_space.weights.classification" in out and "hi must be >= lo" in out


def test_missing_experiment(tmp_path: Path) -> None:
    out = run_failing("--trials", "2")
    assert "--experiment" in out
