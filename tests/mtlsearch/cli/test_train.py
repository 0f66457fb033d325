"""`mtlsearch experiments` and `mtlsearch train`, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtlsearch.cli import app
from tests.utils.server import free_port


def mtlsearch(*args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if data_dir is not None:
        env["MTLSEARCH_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "mtlsearch", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_experiments_lists_tasks() -> None:
    out = mtlsearch("experiments", "--json")
    assert out.returncode == 0, out.stderr
    rows = {row["name"]: row for row in json.loads(out.stdout)}
    assert [t["name"] for t in rows["multi_mnist"]["tasks"]] == ["left", "right"]
    assert [t["name"] for t in rows["adult"]["tasks"]] == ["income", "never_married"]


def test_train_prints_per_task_metrics(data_dir: Path) -> None:
    out = mtlsearch(
        "train",
        "-e",
        "synthetic",
        "--strategy",
        "dwa",
        "--param",
        "tau=1.5",
        "--weights",
        "regression=2,classification=1",
        "--epochs",
        "2",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["config"]["strategy_params"] == {"tau": 1.5}
    assert result["config"]["weights"] == {"regression": 2.0, "classification": 1.0}
    assert set(result["test_metrics"]) == {"regression", "classification"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "nope"], "unknown strategy 'nope'; valid choices:"),
        (["-e", "nope"], "unknown experiment 'nope'; valid choices: adult, adult_mixed,"),
        (["--weights", "colour=1"], "unknown task 'colour'"),
        (["--weights", "regression=-1"], "must be a finite number >= 0"),
        (["--param", "tau"], "is not of the form key=value"),
    ],
)
def test_bad_input_is_one_line(args: list[str], message: str) -> None:
    base = ["train", "-e", "synthetic", "--epochs", "1"]
    out = mtlsearch(*base, *args)
    assert out.returncode == 2
    assert message in out.stderr
    assert out.stderr.strip().count("\n") == 0, out.stderr


def test_missing_data_dir_is_one_line(tmp_path: Path) -> None:
    out = mtlsearch("train", "-e", "adult", "--epochs", "1", data_dir=tmp_path)
    assert out.returncode == 2
    assert str(tmp_path / "uci-adult" / "adult.data") in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --experiment NAME (or --from-trial STUDY/NUMBER)"),
        (["-e", "synthetic", "--url", "http://x"], "--url and --token go with --from-trial"),
        (["--from-trial", "3fa9c1d2e4b5"], "--from-trial must be STUDY/NUMBER"),
        (["--from-trial", "3fa9c1d2e4b5/-1"], "--from-trial must be STUDY/NUMBER"),
        (
            ["--from-trial", "3fa9c1d2e4b5/2", "-e", "adult", "--lr", "0.1", "--seed", "0"],
            "--from-trial retrains the recorded config; drop --experiment, --lr, --seed",
        ),
        (
            ["--from-trial", "3fa9c1d2e4b5/2", "--url", f"http://127.0.0.1:{free_port()}"],
            "cannot reach the mtlsearch server",
        ),
    ],
)
def test_from_trial_input_errors_are_one_line(args: list[str], message: str) -> None:
    out = CliRunner().invoke(app, ["train", *args])
    assert out.exit_code == 2, out.output
    assert message in out.stderr
    assert out.stderr.strip().count("\n") == 0, out.stderr
