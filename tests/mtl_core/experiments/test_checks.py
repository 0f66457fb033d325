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
    DataShapes,
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


def _data_parts(data: DataShapes) -> NetworkParts:
    return _parts(input_dim=data.input_dim)


def _experiment(
    make_split: Callable[[], Split],
    name: str = "check_exp",
    parts: Callable[[DataShapes], NetworkParts] = _data_parts,
) -> Experiment:
    """A registered experiment: task 'reg' (mse, 1 output) and 'cls' (cross-entropy, 3)."""

    class CheckExp(Experiment):
        tasks = (Task("reg", "mse", "rmse", 1), Task("cls", "cross_entropy", "accuracy", 3))

        def load_splits(self, data_dir: Path | None) -> DataSplits:
            return DataSplits(make_split(), make_split(), make_split())

        def network_parts(self, data: DataShapes) -> NetworkParts:
            return parts(data)

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

        def network_parts(self, data: DataShapes) -> NetworkParts:
            return _parts()

    with pytest.raises(ExperimentError) as error:
        register_experiment(BadNames)
    _one_line(error, "experiment 'bad_names'", "task 'b'", field)
    # The registry's own decorator goes through the same check.
    with pytest.raises(ExperimentError):
        EXPERIMENTS.register("bad_names")(BadNames)
    assert "bad_names" not in list_experiments()


def test_network_parts_must_match_the_tasks_at_first_load() -> None:
    experiment = _experiment(_good_split, "wrong_parts", lambda data: _parts(num_tasks=3))
    with pytest.raises(ExperimentError) as error:
        experiment.load(None)
    _one_line(error, "experiment 'wrong_parts'", "num_tasks=3", "expected 2 (one per task")


def test_a_class_that_needs_constructor_arguments_is_refused_at_registration() -> None:
    class NeedsArgs(Experiment):
        name = "needs_args"
        tasks = (Task("a", "mse", "rmse", 1), Task("b", "mse", "rmse", 1))

        def __init__(self, size: int) -> None:
            self.size = size

        def load_splits(self, data_dir: Path | None) -> DataSplits:
            raise NotImplementedError

        def network_parts(self, data: DataShapes) -> NetworkParts:
            return _parts()

    with pytest.raises(ExperimentError) as error:
        register_experiment(NeedsArgs)
    _one_line(error, "experiment 'needs_args'", "no arguments", "give every constructor")


# --- network parts built for the data ----------------------------------------------------------


@pytest.mark.parametrize("width", [3, 11])
def test_the_input_width_comes_from_the_data(width: int) -> None:
    def split() -> Split:
        return Split(torch.randn(N, width), [torch.randn(N), torch.randint(0, 3, (N,))])

    experiment = _experiment(split, f"width_{width}")
    splits = experiment.load(None)
    assert DataShapes.of(splits) == DataShapes((width,), ((), ()))
    assert experiment.parts_for(splits).input_dim == width
    assert experiment.parts_for(DataShapes((width,))).input_dim == width


def test_parts_with_a_constant_width_that_is_not_the_datas_fail_in_one_line() -> None:
    wide = lambda: Split(torch.randn(N, WIDTH + 1), _good_split().targets)  # noqa: E731
    experiment = _experiment(wide, parts=lambda data: _parts(input_dim=WIDTH))
    with pytest.raises(ExperimentError) as error:
        experiment.load(None)
    _one_line(
        error,
        "experiment 'check_exp'",
        f"network_parts() has input_dim={WIDTH}",
        f"inputs have {WIDTH + 1} features per sample",
        "input_dim=data.input_dim",
    )


def _wrong(case: str, data: DataShapes) -> NetworkParts:
    width = data.input_dim
    if case == "first_layer":  # input_dim from the data, the layer from a constant
        return NetworkParts(lambda: [nn.Linear(WIDTH, 8)], 8, lambda i: nn.Linear(8, 1), width, 2)
    if case == "representation":
        return NetworkParts(lambda: [nn.Linear(width, 8)], 9, lambda i: nn.Linear(9, 1), width, 2)
    if case == "head":
        return NetworkParts(lambda: [nn.Linear(width, 8)], 8, lambda i: nn.Linear(8, 2), width, 2)
    if case == "raises":
        raise KeyError("hidden")
    if case == "not_parts":
        return (lambda: [], 8)  # type: ignore[return-value]
    raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("first_layer", ["trunk blocks", f"fail on inputs of [{WIDTH + 1}] per sample", "mat1"]),
        ("representation", ["trunk blocks", "output torch tensor [2, 8]", "9 features"]),
        ("head", ["task 'reg'", "its head outputs torch tensor [2, 2]", "expected 1 per sample"]),
        ("raises", ["network_parts() failed: KeyError: 'hidden'"]),
        ("not_parts", ["must return NetworkParts, got tuple"]),
    ],
)
def test_parts_that_do_not_fit_the_data_fail_at_first_load(case: str, expected: list[str]) -> None:
    wide = lambda: Split(torch.randn(N, WIDTH + 1), _good_split().targets)  # noqa: E731
    experiment = _experiment(wide, f"wrong_{case}", lambda data: _wrong(case, data))
    with pytest.raises(ExperimentError) as error:
        experiment.load(None)
    _one_line(error, f"experiment 'wrong_{case}'", *expected)


def test_splits_of_different_input_shapes_are_named() -> None:
    widths = iter([WIDTH, WIDTH + 2, WIDTH])
    experiment = _experiment(
        lambda: Split(torch.randn(N, next(widths)), _good_split().targets), "uneven"
    )
    with pytest.raises(ExperimentError) as error:
        experiment.load(None)
    _one_line(error, "(val split)", f"training split's shape [{WIDTH}]", f"[{N}, {WIDTH + 2}]")


def test_loading_leaves_the_global_random_state_alone() -> None:
    """The check builds blocks and heads once: the draws after `load` are those after the
    experiment's own `load_splits` (which draws from the global generator here)."""
    experiment = _experiment(_good_split)
    torch.manual_seed(5)
    experiment.load_splits(None)
    expected = torch.rand(3)
    torch.manual_seed(5)
    experiment.load(None)
    assert torch.equal(torch.rand(3), expected)


def test_the_old_network_parts_without_data_still_works_and_warns() -> None:
    class Old(Experiment):
        name = "old_form"
        tasks = (Task("reg", "mse", "rmse", 1), Task("cls", "cross_entropy", "accuracy", 3))

        def load_splits(self, data_dir: Path | None) -> DataSplits:
            return DataSplits(_good_split(), _good_split(), _good_split())

        def network_parts(self) -> NetworkParts:  # type: ignore[override]
            return _parts()

    with pytest.warns(DeprecationWarning, match=r"network_parts\(self, data: DataShapes\)"):
        register_experiment(Old)
    splits = Old().load(None)
    assert Old().parts_for(splits).input_dim == WIDTH


def test_the_old_form_is_still_checked_at_registration() -> None:
    class OldWrong(Experiment):
        name = "old_wrong"
        tasks = (Task("a", "mse", "rmse", 1), Task("b", "mse", "rmse", 1))

        def load_splits(self, data_dir: Path | None) -> DataSplits:
            raise NotImplementedError

        def network_parts(self) -> NetworkParts:  # type: ignore[override]
            return _parts(num_tasks=3)

    with pytest.warns(DeprecationWarning), pytest.raises(ExperimentError) as error:
        register_experiment(OldWrong)
    _one_line(error, "experiment 'old_wrong'", "num_tasks=3", "expected 2")


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

        def network_parts(self, data: DataShapes) -> NetworkParts:
            width = data.input_dim
            return NetworkParts(
                lambda: [nn.Linear(width, 8)], 8, lambda i: nn.Linear(8, 1), width, 2
            )

    register_experiment(Binary)().load(None)


def test_numpy_is_named_not_a_zip_error() -> None:
    targets = np.zeros(N, dtype=np.float32)
    experiment = _experiment(lambda: Split(torch.randn(N, WIDTH), targets))  # type: ignore[arg-type]
    with pytest.raises(ExperimentError, match="one target tensor per task"):
        experiment.load(None)
