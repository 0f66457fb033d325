"""Train one trial of a multi-task experiment from a plain `TrialConfig`.

The trainer is deliberately small: it resolves the config against the experiment's defaults,
keeps the data on the device when it fits, and runs the loop

    losses [T] → scale = fixed weights × schedule → strategy.backward → clip → optimizer.step

reporting validation metrics once per epoch to a callback that may stop the trial (pruning).
The batched trainer (`mtl_core.batched`) reuses the helpers below so both paths agree on
seeding, data order and evaluation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

from mtl_core.architectures import MultiTaskModel, build_model
from mtl_core.config import ResolvedConfig, TrialConfig
from mtl_core.context import StepContext, TaskContext
from mtl_core.errors import ConfigError, TrainingDiverged, TrialStopped
from mtl_core.experiments import DataSplits, Experiment, Split, get_experiment
from mtl_core.results import EpochReport, TrialResult
from mtl_core.schedules import build_schedule
from mtl_core.tasks import build_loss, build_metric
from mtl_core.weighting import ParameterGroups, build_strategy

logger = logging.getLogger(__name__)

EpochCallback = Callable[[EpochReport], None]

#: Steps between two checks for a non-finite loss (each check is a host sync on a GPU).
NAN_CHECK_EVERY = 32
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


def make_generators(config: ResolvedConfig) -> tuple[torch.Generator, torch.Generator]:
    """(strategy generator, data-order generator): CPU generators seeded from the config."""
    return (
        torch.Generator().manual_seed(config.seed),
        torch.Generator().manual_seed(config.data_seed),
    )


def epoch_batches(n: int, batch_size: int, generator: torch.Generator) -> list[Tensor]:
    """This epoch's shuffled index batches (the last one may be short)."""
    return list(torch.randperm(n, generator=generator).split(batch_size))


def task_losses(experiment: Experiment, outputs: list[Tensor], targets: list[Tensor]) -> Tensor:
    """The ``[T]`` vector of this batch's task losses."""
    return torch.stack(
        [
            build_loss(task.loss)(out, target)
            for task, out, target in zip(experiment.tasks, outputs, targets, strict=True)
        ]
    )


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


@torch.no_grad()
def predict(model: MultiTaskModel, split: Split, device: torch.device) -> list[Tensor]:
    """The model's outputs on a whole split, task by task."""
    was_training = model.training
    model.eval()
    chunks: list[list[Tensor]] = []
    for start in range(0, len(split), EVAL_CHUNK):
        x = split.x[start : start + EVAL_CHUNK].to(device, non_blocking=True)
        chunks.append(model(x).outputs)
    model.train(was_training)
    return [torch.cat([c[t] for c in chunks]) for t in range(len(chunks[0]))]


def evaluate(
    model: MultiTaskModel, experiment: Experiment, split: Split, device: torch.device
) -> tuple[dict[str, float], dict[str, float]]:
    return compute_metrics(experiment, predict(model, split, device), split.targets)


def build_optimizer(
    config: ResolvedConfig, params: list[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)


def check_finite(bad: Tensor, task_names: tuple[str, ...], epoch: int) -> None:
    """Raise `TrainingDiverged` naming the tasks whose loss went NaN/inf (one host sync)."""
    if bool(bad.any()):
        names = [n for n, b in zip(task_names, bad.tolist(), strict=True) if b]
        raise TrainingDiverged(
            f"loss of task(s) {', '.join(names)} became NaN or infinite in epoch {epoch + 1}; "
            "lower the learning rate or the weights, or set grad_clip"
        )


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


def train_trial(
    config: TrialConfig,
    data_dir: Path | str | None = None,
    on_epoch: EpochCallback | None = None,
    progress: bool = False,
    data: DataSplits | None = None,
) -> TrialResult:
    """Train one trial and return its validation and test metrics.

    Args:
        config: the trial (`TrialConfig`); unset fields take the experiment's defaults.
        data_dir: where the experiment's data files are (the `data_dir` setting).
        on_epoch: called after every epoch with its `EpochReport`; it may raise
            `TrialStopped` to end the trial early (pruning): the result then carries
            ``stop_reason`` and the metrics of the last epoch that ran.
        progress: show a rich progress bar.
        data: already prepared splits on the right device (a worker reuses them across trials).

    Raises:
        ConfigError: unknown names, bad weights or hyper-parameters (one line, valid choices).
        DataError: a missing or corrupt data file.
        TrainingDiverged: a task loss became NaN or infinite.
    """
    started = time.perf_counter()
    experiment = get_experiment(config.experiment)
    resolved = resolve_config(config, experiment)
    device = resolve_device(resolved.device)
    strategy_gen, data_gen = make_generators(resolved)
    ctx = TaskContext(experiment.task_names, device, resolved.epochs, strategy_gen)
    # Build everything that can reject the config before touching the data.
    torch.manual_seed(resolved.seed)
    model = build_model(
        resolved.architecture, resolved.architecture_params, experiment.network_parts()
    ).to(device)
    strategy = build_strategy(resolved.strategy, resolved.strategy_params, ctx)
    schedule = build_schedule(resolved.schedule, resolved.schedule_params, ctx)
    if data is None:
        data = prepare_data(experiment, data_dir, device, resolved.max_train_samples)
    optimizer = build_optimizer(resolved, list(model.parameters()) + strategy.parameters())
    fixed_weights = torch.tensor(
        [resolved.weights[t] for t in experiment.task_names], device=device
    )
    groups = ParameterGroups(
        shared=model.shared_parameters(),
        task_specific=model.task_parameters(),
        last_shared=model.last_shared_parameters(),
    )
    clip_params = list(model.parameters())
    train = data.train
    n_train = len(train)
    steps_per_epoch = -(-n_train // resolved.batch_size)
    history: list[EpochReport] = []
    stop_reason: str | None = None
    val_metrics: dict[str, float] = {}
    model.train()
    with progress_bar(progress, resolved.epochs * steps_per_epoch, resolved.experiment) as advance:
        for epoch in range(resolved.epochs):
            loss_sum = torch.zeros(ctx.num_tasks, device=device)
            weight_sum = torch.zeros(ctx.num_tasks, device=device)
            bad = torch.zeros(ctx.num_tasks, dtype=torch.bool, device=device)
            batches = epoch_batches(n_train, resolved.batch_size, data_gen)
            for step_in_epoch, index in enumerate(batches):
                index = index.to(train.x.device)
                x = train.x[index].to(device, non_blocking=True)
                targets = [t[index].to(device, non_blocking=True) for t in train.targets]
                step = StepContext(
                    epoch, step_in_epoch, steps_per_epoch, epoch * steps_per_epoch + step_in_epoch
                )
                out = model(x)
                groups.representation = out.representation
                losses = task_losses(experiment, out.outputs, targets)
                bad |= ~torch.isfinite(losses.detach())
                scale = fixed_weights * schedule.multipliers(step)
                optimizer.zero_grad(set_to_none=True)
                weights = strategy.backward(losses, scale, groups, step)
                regularization = model.regularization()
                if regularization.requires_grad:
                    regularization.backward()
                if resolved.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(clip_params, resolved.grad_clip)
                optimizer.step()
                loss_sum += losses.detach()
                weight_sum += weights
                if step_in_epoch % NAN_CHECK_EVERY == NAN_CHECK_EVERY - 1:
                    check_finite(bad, ctx.task_names, epoch)
                advance(1)
            check_finite(bad, ctx.task_names, epoch)
            mean_losses = loss_sum / len(batches)
            strategy.on_epoch_end(epoch, mean_losses)
            val_metrics, val_extra = evaluate(model, experiment, data.val, device)
            report = EpochReport(
                epoch=epoch + 1,
                train_loss=dict(zip(ctx.task_names, mean_losses.tolist(), strict=True)),
                val_metrics=val_metrics,
                val_extra=val_extra,
                weights=dict(
                    zip(ctx.task_names, (weight_sum / len(batches)).tolist(), strict=True)
                ),
                elapsed_s=time.perf_counter() - started,
            )
            history.append(report)
            logger.debug("epoch %d: %s", epoch + 1, report)
            if on_epoch is not None:
                try:
                    on_epoch(report)
                except TrialStopped as stop:
                    stop_reason = str(stop) or f"stopped after epoch {epoch + 1}"
                    break
    test_metrics, test_extra = evaluate(model, experiment, data.test, device)
    return TrialResult(
        config=resolved,
        epochs_run=len(history),
        val_metrics=val_metrics,
        test_metrics=test_metrics,
        test_extra=test_extra,
        history=history,
        stop_reason=stop_reason,
        duration_s=time.perf_counter() - started,
    )
