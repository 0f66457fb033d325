"""What every trial needs before and after training: its resolved config, its device, its data
on that device, its metrics and a progress bar. The trainer (`mtl_core.batched.trainer`) and the
memory probe use these, so every path agrees on defaults, data placement and evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

from mtl_core.config import ResolvedConfig, TrialConfig
from mtl_core.errors import ConfigError
from mtl_core.experiments import DataSplits, Experiment, Split
from mtl_core.results import EpochReport
from mtl_core.tasks import build_metric

logger = logging.getLogger(__name__)

#: Called after every epoch of a trial; may raise `TrialStopped` (pruning).
EpochCallback = Callable[[EpochReport], None]
#: Samples per forward pass during evaluation.
EVAL_CHUNK = 4096


def resolve_config(config: TrialConfig, experiment: Experiment) -> ResolvedConfig:
    """Fill the experiment's defaults into ``config`` and check its task names and weights."""
    tasks = experiment.task_names
    for task in config.weights:
        if task not in tasks:
            raise ConfigError(
                f"weight given for unknown task {task!r} of experiment {experiment.name!r}; "
                f"valid tasks: {', '.join(tasks)}"
            )
    weights = {t: float(config.weights.get(t, 1.0)) for t in tasks}
    if not any(w > 0 for w in weights.values()):
        raise ConfigError(f"at least one task weight must be > 0, got {weights}")
    defaults = experiment.defaults
    return ResolvedConfig(
        experiment=experiment.name,
        strategy=config.strategy,
        strategy_params=dict(config.strategy_params),
        weights=weights,
        schedule=config.schedule,
        schedule_params=dict(config.schedule_params),
        architecture=config.architecture or defaults.architecture,
        architecture_params=dict(config.architecture_params),
        optimizer=config.optimizer or defaults.optimizer,
        lr=config.lr or defaults.lr,
        weight_decay=config.weight_decay,
        epochs=config.epochs or defaults.epochs,
        batch_size=config.batch_size or defaults.batch_size,
        grad_clip=config.grad_clip,
        seed=config.seed,
        data_seed=config.seed if config.data_seed is None else config.data_seed,
        device=config.device,
        max_train_samples=config.max_train_samples,
    )


def resolve_device(name: str) -> torch.device:
    """Parse a device name; a CUDA device that is not there is a config error."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; valid forms: cpu, cuda, cuda:N, mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but CUDA is not available here")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {name!r} does not exist; this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    return device


def prepare_data(
    experiment: Experiment,
    data_dir: Path | str | None,
    device: torch.device,
    max_train_samples: int | None = None,
) -> DataSplits:
    """Load the splits, cut the training set if asked, and move them to ``device`` if they fit.

    Data that do not fit stay on the CPU (pinned on CUDA) and are moved batch by batch.
    """
    splits = experiment.load(data_dir)
    if max_train_samples is not None and max_train_samples < len(splits.train):
        train = splits.train
        splits = DataSplits(
            Split(train.x[:max_train_samples], [t[:max_train_samples] for t in train.targets]),
            splits.val,
            splits.test,
        )
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if splits.nbytes() < 0.5 * free:
            return splits.to(device)
        logger.info("data (%d MB) stay on the CPU: too large for the device", splits.nbytes() >> 20)
        return splits
    return splits.to(device)


def compute_metrics(
    experiment: Experiment, outputs: list[Tensor], targets: list[Tensor]
) -> tuple[dict[str, float], dict[str, float]]:
    """Each task's main metric, and its extra metrics keyed ``task/metric``."""
    main: dict[str, float] = {}
    extra: dict[str, float] = {}
    for task, out, target in zip(experiment.tasks, outputs, targets, strict=True):
        out, target = out.float().cpu(), target.cpu()
        main[task.name] = build_metric(task.metric)(out, target)
        for name in task.extra_metrics:
            extra[f"{task.name}/{name}"] = build_metric(name)(out, target)
    return main, extra


@contextmanager
def progress_bar(enabled: bool, total: int, description: str) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=False,
    ) as bar:
        task_id = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task_id, n)
