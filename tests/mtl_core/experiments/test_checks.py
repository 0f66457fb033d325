"""Up-front checks of user experiments: at registration and when their data are loaded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mtl_core.errors import ConfigError, ExperimentError
from mtl_core.experiments import (
    EXPERIMENTS,
    DataSplits,
    Experiment,
    NetworkParts,
    Split,
    list_experiments,
    register_experiment,
)
from mtl_core.tasks import Task

N = 16
WIDTH = 4


@pytest.fixture(autouse=True)
def _restore_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(EXPERIMENTS, "_entries", dict(EXPERIMENTS._entries))


def _parts(num_tasks: int = 2, input_dim: int = WIDTH) -> NetworkParts:
    return NetworkParts(
        lambda: [nn.Linear(input_dim, 8), nn.ReLU()],
        8,
        lambda i: nn.Linear(8, 3 if i == 1 else 1),
        input_dim,
        num_tasks,
    )


def _good_split() -> Split:
    return Split(torch.randn(N, WIDTH), [torch.randn(N), torch.randint(0, 3, (N,))])


def _experiment(make_split: Callable[[], Split], name: str = "check_exp") -> Experiment:
    """A registered experiment: task 'reg' (mse, 1 output) and 'cls' (cross-entropy, 3)."""

    class CheckExp(Experiment):
        tasks = (Task("reg", "mse", "rmse", 1), Task("cls", "cross_entropy", "accuracy", 3))

        def load_splits(self, data_dir: Path | None) -> DataSplits:
            return DataSplits(make_split(), make_split(), make_split())

        def network_parts(self) -> NetworkParts:
            return _parts()

    CheckExp.name = name
    return register_experiment(CheckExp)()


def _one_line(error: pytest.ExceptionInfo[BaseException], *parts: str) -> str:
    message = str(error.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message
    return message


def test_a_good_experiment_loads() -> None:
    splits = _experiment(_good_split).load(None)
    assert len(splits.train) == N


def test_experiment_error_is_a_config_error() -> None:
    assert issubclass(ExperimentError, ConfigError)


@pytest.mark.parametrize(
    ("task", "field"),
    [
        (Task("b", "msee", "rmse", 1), "unknown loss 'msee'"),
        (Task("b", "mse", "rmsee", 1), "unknown metric 'rmsee'"),
        (Task("b", "mse", "rmse", 1, ("maee",)), "unknown metric 'maee'"),
        (Task("b", "cross_entropy", "accuracy", 1), "output_dim >= 2"),
    ],
)
def test_bad_task_names_are_refused_at_registration(task: Task, field: str) -> None:
    class BadNames(Experiment):
        name = "bad_names"
        tasks = (Task("a", "mse", "rmse", 1), task)

        def load_splits(self, data_dir: Path | None) -> DataSplits:
            raise NotImplementedError

        def network_parts(self) -> NetworkParts:
            return _parts()

    with pytest.raises(ExperimentError) as error:
        register_experiment(BadNames)
    _one_line(error, "experiment 'bad_names'", "task 'b'", field)
    # The registry's own decorator goes through the same check.
    with pytest.raises(ExperimentError):
        EXPERIMENTS.register("bad_names")(BadNames)
    assert "bad_names" not in list_experiments()


def test_network_parts_must_match_the_tasks() -> None:
    class WrongParts(Experiment):
        name = "wrong_parts"
        tasks = (Task("a", "mse", "rmse", 1), Task("b", "mse", "rmse", 1))

        def load_splits(self, data_dir: Path | None) -> DataSplits:
            raise NotImplementedError

        def network_parts(self) -> NetworkParts:
            return _parts(num_tasks=3)

    with pytest.raises(ExperimentError) as error:
        register_experiment(WrongParts)
    _one_line(error, "experiment 'wrong_parts'", "num_tasks=3", "expected 2")


def _bad(case: str) -> Split:
    split = _good_split()
    if case == "shared":
        return Split(split.x, [split.targets[0], split.targets[0]])
    if case == "one_target":
        return Split(split.x, [split.targets[0]])
    if case == "numpy_target":
        return Split(split.x, [split.targets[0].numpy(), split.targets[1]])  # type: ignore[list-item]
    if case == "numpy_inputs":
        return Split(split.x.numpy(), split.targets)  # type: ignore[arg-type]
    if case == "float64_inputs":
        return Split(split.x.double(), split.targets)
    if case == "width":
        return Split(torch.randn(N, WIDTH + 1), split.targets)
    if case == "ce_float":
        return Split(split.x, [split.targets[0], split.targets[1].float()])
    if case == "ce_column":
        return Split(split.x, [split.targets[0], split.targets[1][:, None]])
    if case == "ce_range":
        return Split(split.x, [split.targets[0], split.targets[1] + 3])
    if case == "mse_float64":
        return Split(split.x, [split.targets[0].double(), split.targets[1]])
    if case == "mse_wide":
        return Split(split.x, [torch.randn(N, 2), split.targets[1]])
    if case == "rows":
        return Split(split.x, [split.targets[0][:-1], split.targets[1]])
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("shared", ["tasks 'reg' and 'cls' share one target tensor"]),
        ("one_target", ["one target tensor per task (2: reg, cls)", "got 1"]),
        ("numpy_target", ["task 'reg'", "numpy.ndarray", "float32"]),
        ("numpy_inputs", ["inputs must be a float32 torch tensor", "numpy.ndarray"]),
        ("float64_inputs", ["inputs must be float32", "float64"]),
        ("width", [f"{WIDTH} features", f"with {WIDTH + 1} per sample"]),
        ("ce_float", ["task 'cls'", f"[{N}] int64", f"[{N}] float32"]),
        ("ce_column", ["task 'cls'", f"[{N}] int64", f"[{N}, 1] int64"]),
        ("ce_range", ["task 'cls'", "[0, 2]"]),
        ("mse_float64", ["task 'reg'", f"[{N}] or [{N}, 1] float32", "float64"]),
        ("mse_wide", ["task 'reg'", f"[{N}, 2] float32"]),
        ("rows", ["task 'reg'", f"expected {N} rows"]),
    ],
)
def test_bad_data_is_one_line_when_loaded(case: str, expected: list[str]) -> None:
    experiment = _experiment(lambda: _bad(case))
    with pytest.raises(ExperimentError) as error:
        experiment.load(None)
    _one_line(error, "experiment 'check_exp'", *expected)


def test_a_bce_target_of_one_column_is_fine() -> None:
    class Binary(Experiment):
        name = "binary_exp"
        tasks = (Task("a", "bce_with_logits", "auc", 1), Task("b", "mse", "rmse", 1))

        def load_splits(self, data_dir: Path | None) -> DataSplits:
            x = torch.randn(N, WIDTH)
            split = Split(x, [torch.randint(0, 2, (N, 1)).float(), torch.randn(N)])
            return DataSplits(split, split, split)

        def network_parts(self) -> NetworkParts:
            return _parts()

    register_experiment(Binary)().load(None)


def test_numpy_is_named_not_a_zip_error() -> None:
    targets = np.zeros(N, dtype=np.float32)
    experiment = _experiment(lambda: Split(torch.randn(N, WIDTH), targets))  # type: ignore[arg-type]
    with pytest.raises(ExperimentError, match="one target tensor per task"):
        experiment.load(None)
