"""Up-front checks of an experiment: at registration (its tasks) and on its data (the splits,
the network parts built for them, two rows through those parts).

A user experiment that does not fit together should fail with one line that names the
experiment, the task and what was expected, not with a traceback deep inside training. Every
check raises `ExperimentError`.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor, nn

from mtl_core.architectures import NetworkParts
from mtl_core.errors import ExperimentError
from mtl_core.tasks import LOSSES, METRICS

if TYPE_CHECKING:
    from mtl_core.experiments._base import DataShapes, DataSplits, Experiment, Split

#: What each built-in loss needs of its target (see mtl_core/tasks/losses.py): the dtype and
#: whether a ``[N]`` target is allowed besides ``[N, output_dim]``. Cross-entropy takes class
#: indices ``[N]`` only. A loss that is not listed (a user's own) gets the generic checks only.
_CLASS_INDICES = "class indices"
_TARGETS: dict[str, tuple[torch.dtype, str]] = {
    "cross_entropy": (torch.int64, _CLASS_INDICES),
    "bce_with_logits": (torch.float32, "vector"),
    "mse": (torch.float32, "vector"),
    "l1": (torch.float32, "vector"),
    "huber": (torch.float32, "vector"),
    "kl_div": (torch.float32, "distribution"),
}


def _shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _type_name(value: object) -> str:
    if isinstance(value, Tensor):
        return f"torch tensor {_shape(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    module = type(value).__module__
    return f"{module}.{type(value).__qualname__}" if module != "builtins" else type(value).__name__


def check_definition(cls: type[Experiment]) -> None:
    """Check an experiment class before it is registered: its tasks, and that it builds.

    Its network parts need the data (`build_parts`, at first load), except for the old form
    ``network_parts(self)``, which is called and checked here as it always was.

    Raises:
        ExperimentError: a task with an unknown loss or metric, a bad output width, duplicate
            task names, a class that cannot be built with no arguments, or (old form only)
            network parts that fail or do not match the tasks.
    """
    name = getattr(cls, "name", cls.__qualname__)
    where = f"experiment {name!r}"
    tasks = getattr(cls, "tasks", None)
    if not isinstance(tasks, tuple | list) or not tasks:
        raise ExperimentError(f"{where}: `tasks` must be a non-empty tuple of Task, got {tasks!r}")
    names = [task.name for task in tasks]
    if len(set(names)) != len(names):
        raise ExperimentError(f"{where}: task names must be unique, got {names}")
    for task in tasks:
        at = f"{where} task {task.name!r}"
        if task.loss not in LOSSES:
            raise ExperimentError(
                f"{at}: unknown loss {task.loss!r}; valid losses: {', '.join(LOSSES.names())}"
            )
        for metric in (task.metric, *task.extra_metrics):
            if metric not in METRICS:
                raise ExperimentError(
                    f"{at}: unknown metric {metric!r}; valid metrics: {', '.join(METRICS.names())}"
                )
        if not isinstance(task.output_dim, int) or task.output_dim < 1:
            raise ExperimentError(
                f"{at}: output_dim must be an integer >= 1, got {task.output_dim!r}"
            )
        if task.loss == "cross_entropy" and task.output_dim < 2:
            raise ExperimentError(
                f"{at}: cross_entropy needs output_dim >= 2 (one logit per class), got "
                f"{task.output_dim}; use bce_with_logits for one logit"
            )
    try:
        experiment = cls()
    except Exception as exc:
        raise ExperimentError(
            f"{where}: the registry builds it with no arguments, and {cls.__qualname__}() "
            f"failed: {type(exc).__name__}: {exc} (give every constructor parameter a default)"
        ) from exc
    if not takes_data(experiment.network_parts):
        # The form without data: its parts can (and could always) be checked now.
        warnings.warn(
            f"{where}: network_parts(self) without the data argument is deprecated; define "
            "network_parts(self, data: DataShapes) and build the first block for "
            "data.input_shape (docs/experiments.md)",
            DeprecationWarning,
            stacklevel=4,
        )
        _check_num_tasks(experiment, build_parts(experiment, None))


def takes_data(network_parts: Callable[..., object]) -> bool:
    """Whether a bound ``network_parts`` takes the `DataShapes` argument (the current form)."""
    try:
        signature = inspect.signature(network_parts)
    except (TypeError, ValueError):
        return True
    try:
        signature.bind(None)
    except TypeError:
        return False
    return True


def _check_num_tasks(experiment: Experiment, parts: NetworkParts) -> None:
    tasks = experiment.tasks
    if parts.num_tasks != len(tasks):
        raise ExperimentError(
            f"experiment {experiment.name!r}: network_parts() has num_tasks={parts.num_tasks}, "
            f"expected {len(tasks)} (one per task: {', '.join(experiment.task_names)})"
        )


def build_parts(experiment: Experiment, shapes: DataShapes | None) -> NetworkParts:
    """``experiment.network_parts(shapes)`` (without the argument for the old form), checked.

    Args:
        experiment: the experiment.
        shapes: the loaded data's shapes; None only at registration, for the old form.

    Raises:
        ExperimentError: ``network_parts`` raised or returned no `NetworkParts`, or parts whose
            ``num_tasks`` or ``input_dim`` do not match the tasks and the data.
    """
    where = f"experiment {experiment.name!r}"
    method = experiment.network_parts
    try:
        if takes_data(method):
            parts: object = method(shapes)  # type: ignore[arg-type]
        else:
            parts = cast(Callable[[], NetworkParts], method)()
    except Exception as exc:
        raise ExperimentError(
            f"{where}: network_parts() failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(parts, NetworkParts):
        raise ExperimentError(
            f"{where}: network_parts() must return NetworkParts, got {_type_name(parts)}"
        )
    _check_num_tasks(experiment, parts)
    if shapes is not None and parts.input_dim != shapes.input_dim:
        raise ExperimentError(
            f"{where}: network_parts() has input_dim={parts.input_dim}, but the inputs have "
            f"{shapes.input_dim} features per sample (shape {_shape(shapes.input_shape)} per "
            "sample); build the parts from the data: input_dim=data.input_dim"
        )
    if shapes is not None and parts.input_shape is None:
        # Architectures that size modules after a trunk stage probe the blocks with it.
        parts = dataclasses.replace(parts, input_shape=shapes.input_shape)
    return parts


def check_forward(experiment: Experiment, parts: NetworkParts, split: Split) -> None:
    """Run two rows of ``split`` through fresh trunk blocks and heads, in evaluation mode.

    A first layer built for another input width, a ``representation_dim`` that is not the
    blocks' output or a head of the wrong width then fails here, in one line, instead of deep
    inside the first trial. The global random state is left as it was.

    Raises:
        ExperimentError: the blocks or a head raise, or their outputs have the wrong width.
    """
    where = f"experiment {experiment.name!r}"
    x = split.x[:2]
    if not len(x):
        return
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        try:
            representation = nn.Sequential(*parts.make_blocks()).eval()(x)
        except Exception as exc:
            raise ExperimentError(
                f"{where}: the trunk blocks of network_parts() fail on inputs of "
                f"{_shape(x.shape[1:])} per sample: {type(exc).__name__}: {exc}"
            ) from exc
        if (
            not isinstance(representation, Tensor)
            or representation.dim() == 0
            or representation.shape[0] != len(x)
            or representation[0].numel() != parts.representation_dim
        ):
            raise ExperimentError(
                f"{where}: the trunk blocks of network_parts() output {_type_name(representation)}"
                f" for {len(x)} samples, expected {parts.representation_dim} features per sample "
                "(representation_dim)"
            )
        for index, task in enumerate(experiment.tasks):
            at = f"{where} task {task.name!r}"
            try:
                out = parts.make_head(index).eval()(representation)
            except Exception as exc:
                raise ExperimentError(
                    f"{at}: its head fails on the representation {_type_name(representation)}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if not isinstance(out, Tensor) or out.dim() == 0 or out[0].numel() != task.output_dim:
                raise ExperimentError(
                    f"{at}: its head outputs {_type_name(out)} for {len(x)} samples, expected "
                    f"{task.output_dim} per sample (output_dim)"
                )


def _check_target(experiment: Experiment, split: str, index: int, target: object, n: int) -> None:
    task = experiment.tasks[index]
    at = f"experiment {experiment.name!r} task {task.name!r} ({split} split)"
    dtype, kind = _TARGETS.get(task.loss, (None, "any"))
    dim = task.output_dim
    if kind == _CLASS_INDICES:
        wanted = f"[{n}]"
    elif kind == "vector" and dim == 1:
        wanted = f"[{n}] or [{n}, 1]"
    else:
        wanted = f"[{n}, {dim}]"
    expected = f"a torch tensor {wanted} {str(dtype).removeprefix('torch.')}" if dtype else ""
    if not isinstance(target, Tensor):
        raise ExperimentError(
            f"{at}: target must be {expected or 'a torch tensor'}, got {_type_name(target)}"
        )
    if target.dim() == 0 or target.shape[0] != n:
        raise ExperimentError(
            f"{at}: target has {_shape(target.shape)}, expected {n} rows like the inputs"
        )
    if dtype is None:
        return
    if kind == _CLASS_INDICES:
        shape_ok = target.dim() == 1
    elif kind == "vector" and dim == 1:
        shape_ok = target.dim() == 1 or (target.dim() == 2 and target.shape[1] == 1)
    else:
        shape_ok = target.dim() == 2 and target.shape[1] == dim
    if not shape_ok or target.dtype != dtype:
        raise ExperimentError(
            f"{at}: {task.loss} with output_dim {dim} needs {expected}, got {_type_name(target)}"
        )
    if kind == _CLASS_INDICES and n:
        low, high = int(target.min()), int(target.max())
        if low < 0 or high >= dim:
            raise ExperimentError(
                f"{at}: class indices must lie in [0, {dim - 1}] (output_dim {dim}), got "
                f"values from {low} to {high}"
            )


def _check_split(
    experiment: Experiment, name: str, split: Split, input_shape: tuple[int, ...] | None
) -> None:
    where = f"experiment {experiment.name!r} ({name} split)"
    x = split.x
    if not isinstance(x, Tensor):
        raise ExperimentError(
            f"{where}: inputs must be a float32 torch tensor, got {_type_name(x)}"
        )
    if x.dtype != torch.float32:
        raise ExperimentError(
            f"{where}: inputs must be float32, got {_type_name(x)} (convert with .float())"
        )
    if x.dim() < 2:
        raise ExperimentError(
            f"{where}: inputs must be [N, features...] (one row per sample), got {_type_name(x)}"
        )
    if input_shape is not None and tuple(x.shape[1:]) != input_shape:
        raise ExperimentError(
            f"{where}: inputs must have the training split's shape {_shape(input_shape)} per "
            f"sample, got {_type_name(x)}"
        )
    targets = split.targets
    tasks = experiment.tasks
    if not isinstance(targets, list | tuple) or len(targets) != len(tasks):
        got = len(targets) if isinstance(targets, list | tuple) else _type_name(targets)
        raise ExperimentError(
            f"{where}: expected one target tensor per task ({len(tasks)}: "
            f"{', '.join(experiment.task_names)}), got {got}"
        )
    n = int(x.shape[0])
    for index, target in enumerate(targets):
        for other in range(index):
            if target is targets[other]:
                raise ExperimentError(
                    f"{where}: tasks {tasks[other].name!r} and {tasks[index].name!r} share one "
                    "target tensor; give each task its own"
                )
        _check_target(experiment, name, index, target, n)


def check_splits(experiment: Experiment, splits: DataSplits) -> None:
    """Check loaded data against the experiment's tasks.

    Raises:
        ExperimentError: inputs that are not float32 torch tensors ``[N, ...]`` of one shape
            per sample in every split, not one target per task, or a target whose shape or
            dtype does not fit its loss and head.
    """
    input_shape: tuple[int, ...] | None = None
    for name in ("train", "val", "test"):
        split = getattr(splits, name, None)
        if split is None:
            raise ExperimentError(
                f"experiment {experiment.name!r}: load_splits() must return DataSplits with "
                f"train, val and test, got {_type_name(splits)}"
            )
        _check_split(experiment, name, split, input_shape)
        input_shape = tuple(split.x.shape[1:])


__all__ = ["build_parts", "check_definition", "check_forward", "check_splits", "takes_data"]
