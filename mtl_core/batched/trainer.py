"""Train K trials of one experiment in one pass over shared data (`train_batch`, `BatchedRun`).

Design
------
*Slots.* A `BatchedRun` holds K slots. Each slot holds one trial: its resolved config, its
`TaskContext` (own seeded generator, shared by its schedule and strategy exactly as in
`mtl_core.trainer.train_trial`), its schedule, its epoch counter and history. Parameters,
buffers (BatchNorm running statistics included), optimizer state, per-trial hyper-parameters
(learning rate, weight decay, clip norm, fixed weights) and strategy state are tensors of
leading dim K (`stacking`, `optim`, `strategies`).

*One step.* All K models run as one ``vmap(functional_call)`` on the same batch; the ``[K, T]``
task losses feed the batched strategy; one backward of the sum over trials gives every trial
its own gradient (trials share no parameter); a fused optimizer updates all K at once.
Gradient strategies get ``[K, T, P]`` per-task gradients from T backward passes over all
trials (no loop over trials). No host sync inside the epoch: the NaN flag is accumulated on
the device and read once per epoch.

*Data order.* Trials of one run share ``data_seed``: the run draws the epoch permutations
from one ``torch.Generator().manual_seed(data_seed)``, the i-th draw being epoch i's order,
the same sequence a one-by-one run of any of its trials draws. Each trial's resolved config
records this ``data_seed`` so ``train_trial`` reproduces it.

*Pruning and refill (masking).* Epochs run in lockstep for every slot (same data size and
batch size, so the same number of steps). After each epoch the caller may `stop` a slot
(pruned: it gets its test metrics and leaves) and `refill` a free slot with a new trial,
which starts at its own epoch 0 while the others continue. A free slot is *masked*, not
removed: its rows still run through the kernels (shapes stay fixed, which keeps a compiled
step valid) but the optimizer leaves them untouched and nothing is reported for them. When
slots sit at different epochs they read different permutations, so the batch is gathered per
slot (``[K, B, ...]`` input) for those epochs; otherwise one shared ``[B, ...]`` batch is used.

*Divergence.* A trial whose loss became NaN/inf is ended after that epoch with
``stop_reason`` starting with `DIVERGED`; the others carry on (trials are independent).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from mtl_core.architectures import MultiTaskModel, build_model
from mtl_core.batched.optim import StackedOptimizer, clip_per_trial
from mtl_core.batched.stacking import (
    Params,
    StackedForward,
    meta_template,
    model_state,
    stack_models,
    write_slot,
)
from mtl_core.batched.strategies import (
    BATCHED,
    MixedStrategy,
    StepInputs,
    parse_strategy_config,
)
from mtl_core.config import ResolvedConfig, TrialConfig
from mtl_core.context import StepContext, TaskContext
from mtl_core.errors import ConfigError, TrialStopped
from mtl_core.experiments import DataSplits, Experiment, Split, get_experiment
from mtl_core.results import EpochReport, TrialResult
from mtl_core.schedules import build_schedule
from mtl_core.schedules._base import Schedule
from mtl_core.tasks import build_loss
from mtl_core.trainer import (
    EVAL_CHUNK,
    compute_metrics,
    prepare_data,
    progress_bar,
    resolve_config,
    resolve_device,
)

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16"]
#: ``stop_reason`` prefix of a trial whose loss became NaN or infinite.
DIVERGED = "diverged: "
#: Schedules whose multipliers depend on the step only (computed once per epoch and shared).
_STEP_ONLY_SCHEDULES = frozenset({"joint", "curriculum", "pretrain", "aux_decay"})
#: Strategies that need shared parameters (GradNorm's W, the combined task gradients).
_NEED_SHARED = frozenset({"gradnorm", "pcgrad", "mgda", "cagrad"})
#: Fields that must agree for trials to share one batch.
_BATCH_KEY_FIELDS = (
    "experiment",
    "architecture",
    "architecture_params",
    "schedule",
    "schedule_params",
    "epochs",
    "batch_size",
    "optimizer",
    "device",
    "max_train_samples",
)


def batchable(config: TrialConfig) -> bool:
    """Whether ``config`` has a batched form (its strategy and settings are supported)."""
    if config.strategy not in BATCHED:
        return False
    if config.strategy == "mgda" and config.strategy_params.get("upper_bound", False):
        return False
    try:
        parse_strategy_config(config.strategy, config.strategy_params)
        resolved = resolve_config(config, get_experiment(config.experiment))
    except (ConfigError, KeyError, ValueError):
        return False
    # Strategies that read the shared parameters fail on soft sharing (none are shared):
    # one-by-one training reports that error for the one trial instead of the whole batch.
    return not (resolved.architecture == "soft" and config.strategy in _NEED_SHARED)


def _batch_key(resolved: ResolvedConfig, epochs: bool = True) -> tuple[Any, ...]:
    values = resolved.model_dump()
    fields = [f for f in _BATCH_KEY_FIELDS if epochs or f != "epochs"]
    key: list[Any] = [repr(values[name]) for name in fields]
    key.append(BATCHED[resolved.strategy].uses_task_gradients)
    return tuple(key)


def can_batch_together(configs: Sequence[TrialConfig]) -> bool:
    """Whether ``configs`` can train in one batch.

    They must be `batchable`, of one experiment, and agree on architecture (and its
    parameters), schedule (and its parameters), epochs, batch size, optimizer kind, device
    and training-set size; their strategies must all be loss-based or all gradient-based;
    explicit ``data_seed`` values must agree (the batch shares one data order).
    """
    if not configs or not all(batchable(c) for c in configs):
        return False
    try:
        experiment = get_experiment(configs[0].experiment)
        resolved = [resolve_config(c, experiment) for c in configs]
    except (ConfigError, KeyError, ValueError):
        return False
    if any(c.experiment != configs[0].experiment for c in configs):
        return False
    if len({_batch_key(r) for r in resolved}) != 1:
        return False
    return len({c.data_seed for c in configs if c.data_seed is not None}) <= 1


def plan_batches(configs: Sequence[TrialConfig], max_k: int) -> list[list[int]]:
    """Group ``configs`` (by index) into batches of at most ``max_k`` that can train together.

    Configs that are not `batchable` come back as groups of one: train those with
    `mtl_core.trainer.train_trial`. Order within a group follows ``configs``.
    """
    if max_k < 1:
        raise ValueError(f"max_k must be >= 1, got {max_k=}")
    groups: dict[tuple[Any, ...], list[int]] = {}
    out: list[list[int]] = []
    for index, config in enumerate(configs):
        if not batchable(config):
            out.append([index])
            continue
        try:
            resolved = resolve_config(config, get_experiment(config.experiment))
        except (ConfigError, KeyError, ValueError):
            out.append([index])
            continue
        key = (*_batch_key(resolved), config.data_seed)
        group = groups.setdefault(key, [])
        group.append(index)
        if len(group) == max_k:
            out.append(group)
            groups[key] = []
    out.extend(group for group in groups.values() if group)
    return out


@dataclass
class _Slot:
    """One trial living in a slot."""

    config: ResolvedConfig
    ctx: TaskContext
    schedule: Schedule
    tag: Any
    started: float
    epoch: int = 0
    history: list[EpochReport] = field(default_factory=list)


@dataclass
class SlotReport:
    """One epoch of the trial in ``slot`` (``tag`` is what the caller attached to it)."""

    slot: int
    tag: Any
    report: EpochReport


@dataclass
class FinishedTrial:
    """A trial that left its slot: ran all epochs, was stopped, or diverged."""

    slot: int
    tag: Any
    result: TrialResult


class BatchedRun:
    """K trials of one experiment trained together, slot by slot (see the module docstring).

    Args:
        configs: the first trials (at most ``num_slots``); they must `can_batch_together`.
        data_dir: where the experiment's data files are.
        num_slots: K (default ``len(configs)``); extra slots start free, for `refill`.
        data: splits already prepared on the device (shared with a worker's other runs).
        precision: ``"fp32"`` or ``"bf16"`` (autocast of the forward pass).
        compile: wrap the batched forward in `torch.compile`.
        tags: one value per config, handed back in reports and results (trial ids).
    """

    def __init__(
        self,
        configs: Sequence[TrialConfig],
        data_dir: Path | str | None = None,
        num_slots: int | None = None,
        data: DataSplits | None = None,
        precision: Precision = "fp32",
        compile: bool = False,
        tags: Sequence[Any] | None = None,
    ) -> None:
        if not configs:
            raise ValueError("need at least one config, got 0")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision=}")
        num_slots = len(configs) if num_slots is None else num_slots
        if num_slots < len(configs):
            raise ValueError(f"num_slots must be >= len(configs), got {num_slots=}")
        if not can_batch_together(configs):
            raise ConfigError("these trials cannot be trained in one batch; train them one by one")
        self.experiment: Experiment = get_experiment(configs[0].experiment)
        first = resolve_config(configs[0], self.experiment)
        explicit = [c.data_seed for c in configs if c.data_seed is not None]
        self.data_seed = explicit[0] if explicit else first.data_seed
        # A refill may run a different number of epochs (each slot keeps its own count).
        self.key = _batch_key(first, epochs=False)
        self.device = resolve_device(first.device)
        self.precision: Precision = precision
        self.num_slots = num_slots
        self.num_tasks = len(self.experiment.tasks)
        self.epochs = first.epochs
        self.batch_size = first.batch_size
        self.optimizer_kind = first.optimizer
        self._losses = [build_loss(task.loss) for task in self.experiment.tasks]
        tags = list(tags) if tags is not None else list(range(len(configs)))

        resolved = [self._resolve(c) for c in configs]
        names = sorted({r.strategy for r in resolved})
        self.strategy = MixedStrategy(names, num_slots, self.num_tasks, self.device)
        models: list[MultiTaskModel] = []
        slots: list[_Slot] = []
        for r, tag in zip(resolved, tags, strict=True):
            model, slot = self._build_trial(r, tag)
            models.append(model)
            slots.append(slot)
        # Free slots hold a copy of the first model until refilled (their rows are masked).
        models += [models[0]] * (num_slots - len(models))
        params, buffers, self.spec = stack_models(models)
        self.params: Params = params
        self.buffers: Params = buffers
        self.template = meta_template(models[0])
        self.slots: list[_Slot | None] = [*slots, *([None] * (num_slots - len(slots)))]
        for index, (slot, r) in enumerate(zip(slots, resolved, strict=True)):
            self.strategy.reset_slot(
                index, r.strategy, parse_strategy_config(r.strategy, r.strategy_params), slot.ctx
            )
        zeros = torch.zeros(num_slots, device=self.device)
        self.optimizer = StackedOptimizer(
            self.optimizer_kind,
            [*self.params.values(), *self.strategy.parameters()],
            lr=zeros.clone(),
            weight_decay=zeros.clone(),
        )
        self.clip = torch.full((num_slots,), float("inf"), device=self.device)
        self._clipping = False
        self.fixed_weights = torch.zeros(num_slots, self.num_tasks, device=self.device)
        for index, r in enumerate(resolved):
            self._set_hyper(index, r)

        if data is None:
            data = prepare_data(self.experiment, data_dir, self.device, first.max_train_samples)
        self.data = data
        self.n_train = len(data.train)
        self.steps_per_epoch = -(-self.n_train // self.batch_size)
        self._data_gen = torch.Generator().manual_seed(self.data_seed)
        self._perms: list[Tensor] = []
        self._finished: list[FinishedTrial] = []
        self._forward = StackedForward(self.template, self._per_trial)
        self._compiled: Callable[..., Any] = self._forward
        if compile:
            self._compiled = torch.compile(self._forward)
        self._shared_names = [n for n in self.spec.param_names if n in set(self.spec.shared)]
        self._task_names = [n for n in self.spec.param_names if n not in set(self.spec.shared)]
        self.reported_epochs = 0
        self._all_live = False
        self._version = 0  # bumped by every optimizer step (invalidates the test cache)
        self._test_cache: tuple[int, list[Tensor]] | None = None

    # --- construction ----------------------------------------------------------------------

    def _resolve(self, config: TrialConfig) -> ResolvedConfig:
        resolved = resolve_config(config, self.experiment)
        if _batch_key(resolved, epochs=False) != self.key:
            raise ConfigError("trial does not fit this batch (see can_batch_together)")
        if config.data_seed is not None and config.data_seed != self.data_seed:
            raise ConfigError(
                f"trial has data_seed {config.data_seed}, this batch shares {self.data_seed}"
            )
        return resolved.model_copy(update={"data_seed": self.data_seed})

    def _build_trial(self, resolved: ResolvedConfig, tag: Any) -> tuple[MultiTaskModel, _Slot]:
        """Model and slot of one trial, seeded exactly as `train_trial` does."""
        # The context lives on the CPU: the schedule's multipliers are gathered into one
        # table per epoch there (one transfer), and the batched strategies keep their own
        # state on the device; only the generator is the trial's.
        ctx = TaskContext(
            self.experiment.task_names,
            torch.device("cpu"),
            resolved.epochs,
            torch.Generator().manual_seed(resolved.seed),
        )
        torch.manual_seed(resolved.seed)
        model = build_model(
            resolved.architecture, resolved.architecture_params, self.experiment.network_parts()
        ).to(self.device)
        schedule = build_schedule(resolved.schedule, resolved.schedule_params, ctx)
        return model, _Slot(resolved, ctx, schedule, tag, time.perf_counter())

    def _set_hyper(self, index: int, resolved: ResolvedConfig) -> None:
        self.optimizer.reset_slot(index, resolved.lr, resolved.weight_decay)
        self.clip[index] = float("inf") if resolved.grad_clip is None else resolved.grad_clip
        # Host-side flag: a batch where no trial clips skips the per-trial norms.
        self._clipping = self._clipping or resolved.grad_clip is not None
        self.fixed_weights[index] = torch.tensor(
            [resolved.weights[t] for t in self.experiment.task_names], device=self.device
        )

    # --- slots -----------------------------------------------------------------------------

    def occupied(self) -> list[int]:
        """Indices of the slots that hold a live trial."""
        return [i for i, slot in enumerate(self.slots) if slot is not None]

    def free_slots(self) -> list[int]:
        return [i for i, slot in enumerate(self.slots) if slot is None]

    def refill(self, slot: int, config: TrialConfig, tag: Any = None) -> ResolvedConfig:
        """Start a new trial in free ``slot``; it begins at epoch 0 while the others go on.

        Returns the trial's resolved config (its ``data_seed`` is the batch's).
        """
        if self.slots[slot] is not None:
            raise ValueError(f"slot {slot} is not free")
        if not batchable(config):
            raise ConfigError(f"strategy {config.strategy!r} has no batched form")
        resolved = self._resolve(config)
        model, new = self._build_trial(resolved, slot if tag is None else tag)
        params, buffers = model_state(model)
        write_slot(self.params, slot, params)
        write_slot(self.buffers, slot, buffers)
        self.optimizer.add_params(self.strategy.add_member(resolved.strategy))
        self.strategy.reset_slot(
            slot,
            resolved.strategy,
            parse_strategy_config(resolved.strategy, resolved.strategy_params),
            new.ctx,
        )
        self._set_hyper(slot, resolved)
        self.slots[slot] = new
        return resolved

    def stop(self, slot: int, reason: str) -> FinishedTrial:
        """End the trial in ``slot`` now (pruned): test metrics, result, slot freed."""
        return self._finish(slot, reason)

    def pop_finished(self) -> list[FinishedTrial]:
        """Trials that finished (all epochs, or diverged) since the last call."""
        out, self._finished = self._finished, []
        return out

    def _finish(self, slot: int, reason: str | None) -> FinishedTrial:
        state = self.slots[slot]
        if state is None:
            raise ValueError(f"slot {slot} is free")
        # Every trial that leaves at this epoch boundary shares one pass over the test split.
        if self._test_cache is None or self._test_cache[0] != self._version:
            self._test_cache = (self._version, self._predict(self.data.test))
        test_outputs = self._test_cache[1]
        test_metrics, test_extra = compute_metrics(
            self.experiment, [o[slot] for o in test_outputs], self.data.test.targets
        )
        last = state.history[-1] if state.history else None
        result = TrialResult(
            config=state.config,
            epochs_run=len(state.history),
            val_metrics=dict(last.val_metrics) if last else {},
            test_metrics=test_metrics,
            test_extra=test_extra,
            history=state.history,
            stop_reason=reason,
            duration_s=time.perf_counter() - state.started,
        )
        self.slots[slot] = None
        self.strategy.release_slot(slot)
        return FinishedTrial(slot, state.tag, result)

    # --- the step --------------------------------------------------------------------------

    def _per_trial(
        self,
        outputs: tuple[Tensor, ...],
        representation: Tensor | None,
        regularization: Tensor,
        *targets: Tensor,
    ) -> tuple[Tensor, Tensor]:
        losses = torch.stack(
            [fn(out, tgt) for fn, out, tgt in zip(self._losses, outputs, targets, strict=True)]
        )
        return losses.float(), regularization.float()

    def _perm(self, epoch: int) -> Tensor:
        while len(self._perms) <= epoch:
            self._perms.append(
                torch.randperm(self.n_train, generator=self._data_gen).to(self.data.train.x.device)
            )
        return self._perms[epoch]

    def _multipliers(self, live: list[int], epochs: dict[int, int]) -> Tensor:
        """``[S, K, T]`` schedule multipliers of this epoch (free slots get 0)."""
        steps = self.steps_per_epoch
        table = torch.zeros(steps, self.num_slots, self.num_tasks)
        per_epoch: dict[int, Tensor] = {}
        for index in live:
            slot = self.slots[index]
            assert slot is not None
            epoch = epochs[index]
            shareable = slot.config.schedule in _STEP_ONLY_SCHEDULES or (
                slot.config.schedule == "alternating"
                and slot.config.schedule_params.get("mode", "round_robin") == "round_robin"
            )
            if shareable and epoch in per_epoch:
                table[:, index] = per_epoch[epoch]
                continue
            column = torch.stack(
                [
                    slot.schedule.multipliers(StepContext(epoch, s, steps, epoch * steps + s)).cpu()
                    for s in range(steps)
                ]
            )
            table[:, index] = column
            if shareable:
                per_epoch[epoch] = column
        return table.to(self.device, non_blocking=True)

    def _flat_shared(self, grads: Sequence[Tensor]) -> Tensor:
        k = self.num_slots
        return torch.cat([g.reshape(k, -1) for g in grads], dim=1)

    def _step(
        self, x: Tensor, targets: list[Tensor], batched: bool, scale: Tensor, occupied: Tensor
    ) -> tuple[Tensor, Tensor]:
        """One optimisation step of every slot; returns (losses ``[K, T]``, weights)."""
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16"):
            losses, reg = self._compiled(
                self.params, self.buffers, x, *targets, x_batched=batched, extra_batched=batched
            )
        names = list(self.spec.param_names)
        model_params = [self.params[n] for n in names]
        strategy_params = self.strategy.parameters()
        inputs = StepInputs(
            losses=losses,
            scale=scale,
            last_shared=[self.params[n] for n in self.spec.last_shared],
            occupied=occupied,
        )
        if not self.strategy.uses_task_gradients:
            objective, weights = self.strategy.objective(inputs)
            total = objective.sum() + reg.sum()
            grads = list(
                torch.autograd.grad(
                    total,
                    [*model_params, *strategy_params],
                    allow_unused=True,
                    materialize_grads=True,
                )
            )
        else:
            grads, weights = self._gradient_step(losses, reg, scale, inputs)
            grads += [torch.zeros_like(p) for p in strategy_params]
        if self._clipping:
            clip_per_trial(grads[: len(model_params)], self.clip)
        self.optimizer.step(grads, occupied, all_active=self._all_live)
        self._version += 1
        return losses.detach(), weights.detach()

    def _gradient_step(
        self, losses: Tensor, reg: Tensor, scale: Tensor, inputs: StepInputs
    ) -> tuple[list[Tensor], Tensor]:
        shared = [self.params[n] for n in self._shared_names]
        if not shared:
            raise ConfigError(
                f"strategy {self.strategy.names} needs an architecture with shared parameters "
                "(hard sharing or MMoE); this model has none"
            )
        weighted = losses * scale
        rows = []
        for t in range(self.num_tasks):
            # One backward per task covers every trial: the trials share no parameter.
            task_grads = torch.autograd.grad(
                weighted[:, t].sum(),
                shared,
                retain_graph=True,
                allow_unused=True,
                materialize_grads=True,
            )
            rows.append(self._flat_shared(task_grads))
        per_task = torch.stack(rows, dim=1)  # [K, T, P]
        combined, weights = self.strategy.combine(per_task, inputs)
        grads_by_name: dict[str, Tensor] = {}
        offset = 0
        for name, p in zip(self._shared_names, shared, strict=True):
            n = p[0].numel()
            grads_by_name[name] = combined[:, offset : offset + n].reshape(p.shape).to(p.dtype)
            offset += n
        task_params = [self.params[n] for n in self._task_names]
        total = weighted.sum() + reg.sum()
        if task_params:
            task_grads = torch.autograd.grad(
                total, task_params, retain_graph=True, allow_unused=True, materialize_grads=True
            )
            grads_by_name.update(zip(self._task_names, task_grads, strict=True))
        if reg.requires_grad:
            reg_grads = torch.autograd.grad(
                reg.sum(), shared, allow_unused=True, materialize_grads=True
            )
            for name, g in zip(self._shared_names, reg_grads, strict=True):
                grads_by_name[name] = grads_by_name[name] + g
        return [grads_by_name[n] for n in self.spec.param_names], weights

    def probe_step(self) -> None:
        """One training step and one evaluation chunk on the first batch (memory probes).

        The trials' state changes: use a throw-away run.
        """
        live = self.occupied()
        occupied = torch.zeros(self.num_slots, dtype=torch.bool)
        occupied[live] = True
        index = self._perm(0)[: self.batch_size]
        x = self.data.train.x[index].to(self.device)
        targets = [t[index].to(self.device) for t in self.data.train.targets]
        self._step(x, targets, False, self.fixed_weights, occupied.to(self.device))
        size = self._eval_chunk()
        probe = Split(self.data.val.x[:size], [t[:size] for t in self.data.val.targets])
        self._predict(probe)

    # --- epochs ----------------------------------------------------------------------------

    def run_epoch(self, advance: Callable[[int], None] | None = None) -> list[SlotReport]:
        """Train every live slot for one epoch; return their reports.

        Trials that completed all their epochs, or diverged, are finished here (see
        `pop_finished`); a report is returned for each live slot that trained.
        """
        live = self.occupied()
        if not live:
            return []
        epochs = {i: self.slots[i].epoch for i in live}  # type: ignore[union-attr]
        distinct = sorted(set(epochs.values()))
        batched = len(distinct) > 1
        perms = {e: self._perm(e) for e in distinct}
        occupied = torch.zeros(self.num_slots, dtype=torch.bool)
        occupied[live] = True
        occupied = occupied.to(self.device)
        self._all_live = len(live) == self.num_slots
        slot_epoch = [epochs.get(i, distinct[0]) for i in range(self.num_slots)]
        table = self._multipliers(live, epochs)
        train: Split = self.data.train
        loss_sum = torch.zeros(self.num_slots, self.num_tasks, device=self.device)
        weight_sum = torch.zeros_like(loss_sum)
        bad = torch.zeros(self.num_slots, self.num_tasks, dtype=torch.bool, device=self.device)
        if batched:
            perm_rows = torch.stack([perms[e] for e in slot_epoch])  # [K, N]
        for s in range(self.steps_per_epoch):
            lo, hi = s * self.batch_size, min((s + 1) * self.batch_size, self.n_train)
            rows = perm_rows[:, lo:hi] if batched else perms[distinct[0]][lo:hi]
            x = train.x[rows].to(self.device, non_blocking=True)
            targets = [t[rows].to(self.device, non_blocking=True) for t in train.targets]
            scale = self.fixed_weights * table[s]
            losses, weights = self._step(x, targets, batched, scale, occupied)
            bad |= ~torch.isfinite(losses)
            loss_sum += losses
            weight_sum += weights
            if advance is not None:
                advance(1)
        mean_losses = loss_sum / self.steps_per_epoch
        self.strategy.on_epoch_end(occupied, mean_losses)
        val_outputs = self._predict(self.data.val)
        # One host transfer per epoch for the flags, losses and weights of every slot.
        host_bad = bad.any(dim=-1).cpu().tolist()
        host_losses = mean_losses.cpu().tolist()
        host_weights = (weight_sum / self.steps_per_epoch).cpu().tolist()
        task_names = self.experiment.task_names
        reports: list[SlotReport] = []
        for index in live:
            slot = self.slots[index]
            assert slot is not None
            slot.epoch += 1
            if host_bad[index]:
                names = [n for n, b in zip(task_names, bad[index].tolist(), strict=True) if b]
                reason = (
                    f"{DIVERGED}loss of task(s) {', '.join(names)} became NaN or infinite in "
                    f"epoch {slot.epoch}; lower the learning rate or the weights, or set grad_clip"
                )
                self._finished.append(self._finish(index, reason))
                continue
            val_metrics, val_extra = compute_metrics(
                self.experiment, [o[index] for o in val_outputs], self.data.val.targets
            )
            report = EpochReport(
                epoch=slot.epoch,
                train_loss=dict(zip(task_names, host_losses[index], strict=True)),
                val_metrics=val_metrics,
                val_extra=val_extra,
                weights=dict(zip(task_names, host_weights[index], strict=True)),
                elapsed_s=time.perf_counter() - slot.started,
            )
            slot.history.append(report)
            reports.append(SlotReport(index, slot.tag, report))
        self.reported_epochs += 1
        return reports

    def finish_completed(self) -> None:
        """Finish the live trials that have run all their epochs (moves them to finished)."""
        for index in self.occupied():
            slot = self.slots[index]
            assert slot is not None
            if slot.epoch >= slot.config.epochs:
                self._finished.append(self._finish(index, None))

    def _eval_chunk(self) -> int:
        """Samples per evaluation pass: K trials see each chunk, and no activation is kept
        for a backward, so K x chunk may be a few training batches' worth."""
        return min(EVAL_CHUNK, max(self.batch_size, 4 * EVAL_CHUNK // self.num_slots))

    @torch.no_grad()
    def _predict(self, split: Split) -> list[Tensor]:
        """Every slot's outputs on a split: one ``[K, N, ...]`` tensor per task."""
        chunks: list[tuple[Tensor, ...]] = []
        forward = StackedForward(self.template)
        size = self._eval_chunk()
        for start in range(0, len(split), size):
            x = split.x[start : start + size].to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16"):
                chunks.append(forward(self.params, self.buffers, x, training=False))
        self.template.train(True)
        return [torch.cat([c[t] for c in chunks], dim=1) for t in range(len(chunks[0]))]

    def run(
        self,
        on_epoch: Callable[[list[SlotReport]], Iterable[int] | None] | None = None,
        refill: Callable[[int], tuple[TrialConfig, Any] | None] | None = None,
        progress: bool = False,
    ) -> list[FinishedTrial]:
        """Train until no slot is live.

        Args:
            on_epoch: called after each epoch with the live slots' reports; returns the slots
                to stop (pruned) — or raises nothing and returns None to keep them all.
            refill: called with each free slot after an epoch; returns ``(config, tag)`` of a
                new trial for it, or None to leave it free.
            progress: show a progress bar (steps of the first epochs' schedule).
        """
        finished: list[FinishedTrial] = []
        total = self.epochs * self.steps_per_epoch
        with progress_bar(progress, total, f"{self.experiment.name} x{self.num_slots}") as adv:
            while self.occupied():
                reports = self.run_epoch(adv)
                stop = set(on_epoch(reports) or ()) if on_epoch is not None else set()
                for index in sorted(stop):
                    if self.slots[index] is not None:
                        epoch = self.slots[index].epoch  # type: ignore[union-attr]
                        finished.append(self.stop(index, f"stopped after epoch {epoch}"))
                self.finish_completed()
                finished += self.pop_finished()
                if refill is not None:
                    for index in self.free_slots():
                        new = refill(index)
                        if new is not None:
                            self.refill(index, new[0], new[1])
        return finished


def train_batch(
    configs: list[TrialConfig],
    data_dir: Path | str | None = None,
    on_epoch: Callable[[int, EpochReport], None] | None = None,
    progress: bool = False,
    data: DataSplits | None = None,
    precision: Precision = "fp32",
    compile: bool = False,
) -> list[TrialResult]:
    """Train ``configs`` together and return their results in the same order.

    ``on_epoch(i, report)`` is called for trial ``configs[i]`` after each of its epochs and may
    raise `TrialStopped` to prune that trial only. A trial that diverges ends with a
    ``stop_reason`` starting with `DIVERGED`. On CUDA out-of-memory before the first epoch
    ends, the batch is split in two halves that train one after the other.

    Raises:
        ConfigError: the configs cannot be batched together (see `can_batch_together`).
    """
    if not configs:
        return []
    run = None
    try:
        run = BatchedRun(configs, data_dir, data=data, precision=precision, compile=compile)

        def handle(reports: list[SlotReport]) -> list[int]:
            stop: list[int] = []
            for item in reports:
                if on_epoch is None:
                    continue
                try:
                    on_epoch(int(item.tag), item.report)
                except TrialStopped as exc:
                    run_slot = run.slots[item.slot] if run is not None else None
                    epoch = run_slot.epoch if run_slot is not None else item.report.epoch
                    reason = str(exc) or f"stopped after epoch {epoch}"
                    finished_early[item.slot] = reason
                    stop.append(item.slot)
            return stop

        finished_early: dict[int, str] = {}
        done = run.run(handle, progress=progress)
    except torch.cuda.OutOfMemoryError:
        if len(configs) == 1 or (run is not None and run.reported_epochs > 0):
            raise
        del run
        torch.cuda.empty_cache()
        half = len(configs) // 2
        logger.warning("CUDA out of memory with K=%d; retrying as K=%d", len(configs), half)

        def shifted(offset: int) -> Callable[[int, EpochReport], None] | None:
            if on_epoch is None:
                return None
            return lambda i, report: on_epoch(i + offset, report)

        return train_batch(
            configs[:half], data_dir, shifted(0), progress, data, precision, compile
        ) + train_batch(configs[half:], data_dir, shifted(half), progress, data, precision, compile)
    results: list[TrialResult | None] = [None] * len(configs)
    for item in done:
        result = item.result
        reason = finished_early.get(item.slot)
        if reason is not None and result.stop_reason is not None:
            result.stop_reason = reason
        results[int(item.tag)] = result
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]
