"""Up-front checks of an experiment: at registration (names, network parts) and on its data.

A user experiment that does not fit together should fail with one line that names the
experiment, the task and what was expected, not with a traceback deep inside training. Every
check raises `ExperimentError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from mtl_core.errors import ExperimentError
from mtl_core.tasks import LOSSES, METRICS

if TYPE_CHECKING:
    from mtl_core.architectures import NetworkParts
    from mtl_core.experiments._base import DataSplits, Experiment, Split

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
    """Check an experiment class before it is registered: its tasks and its network parts.

    Raises:
        ExperimentError: a task with an unknown loss or metric, a bad output width, duplicate
            task names, or network parts that do not match the tasks.
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
        parts = cls().network_parts()
    except Exception as exc:
        raise ExperimentError(
            f"{where}: network_parts() failed: {type(exc).__name__}: {exc} (it is called "
            "without a data directory)"
        ) from exc
    if parts.num_tasks != len(tasks):
        raise ExperimentError(
            f"{where}: network_parts() has num_tasks={parts.num_tasks}, expected {len(tasks)} "
            f"(one per task: {', '.join(names)})"
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


def _check_split(experiment: Experiment, name: str, split: Split, input_dim: int) -> None:
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
    if x.dim() < 2 or x.shape[1:].numel() != input_dim:
        width = x.shape[1:].numel() if x.dim() >= 2 else "?"
        raise ExperimentError(
            f"{where}: inputs must have {input_dim} features per sample (network_parts() "
            f"input_dim), got {_type_name(x)} with {width} per sample"
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


def check_splits(experiment: Experiment, splits: DataSplits, parts: NetworkParts) -> None:
    """Check loaded data against the experiment's tasks and network parts.

    Raises:
        ExperimentError: inputs that are not float32 torch tensors of ``parts.input_dim``
            features, not one target per task, or a target whose shape or dtype does not fit
            its loss and head.
    """
    for name in ("train", "val", "test"):
        split = getattr(splits, name, None)
        if split is None:
            raise ExperimentError(
                f"experiment {experiment.name!r}: load_splits() must return DataSplits with "
                f"train, val and test, got {_type_name(splits)}"
            )
        _check_split(experiment, name, split, parts.input_dim)


__all__ = ["check_definition", "check_splits"]
