"""`BatchedRun`: K trials of one experiment in one pass over shared data, slot by slot.

How it works (slots, the step, the order of random draws, pruning and refill, divergence) is
the package's docstring, `mtl_core.batched`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from mtl_core.architectures import MultiTaskModel
from mtl_core.batched.data_order import EpochOrder
from mtl_core.batched.evaluation import SlotEvaluator
from mtl_core.batched.planning import batch_key, batchable, can_batch_together, gradient_space
from mtl_core.batched.slots import (
    DIVERGED,
    FinishedTrial,
    Slot,
    SlotReport,
    divergence_reason,
    new_trial,
    record_epoch,
    schedule_table,
)
from mtl_core.batched.stacking import (
    DirectForward,
    StackedForward,
    model_state,
    stack_trials,
    write_slot,
)
from mtl_core.batched.step import SlotStep
from mtl_core.config import ResolvedConfig, TrialConfig
from mtl_core.errors import ConfigError
from mtl_core.experiments import DataSplits, Experiment, Split, get_experiment
from mtl_core.optim import StackedOptimizer
from mtl_core.results import TrialResult
from mtl_core.tasks import build_loss
from mtl_core.trial_setup import (
    compute_metrics,
    prepare_data,
    progress_bar,
    resolve_config,
    resolve_device,
)
from mtl_core.weighting import (
    MixedStrategy,
    parse_strategy_config,
)

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16"]
__all__ = ["DIVERGED", "BatchedRun", "FinishedTrial", "Precision", "SlotReport"]


class BatchedRun:
    """K trials of one experiment trained together, slot by slot (see `mtl_core.batched`).

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
        # One trial alone trains whatever it is (its own errors surface as they are).
        if len(configs) > 1 and not can_batch_together(configs):
            raise ConfigError("these trials cannot be trained in one batch; train them one by one")
        self.experiment: Experiment = get_experiment(configs[0].experiment)
        first = resolve_config(configs[0], self.experiment)
        explicit = [c.data_seed for c in configs if c.data_seed is not None]
        self.data_seed = explicit[0] if explicit else first.data_seed
        # A refill may run a different number of epochs (each slot keeps its own count).
        self.key = batch_key(first, epochs=False)
        self.space = gradient_space(first)
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
        if data is None:
            data = prepare_data(self.experiment, data_dir, self.device, first.max_train_samples)
        self.data = data
        # The network is built for the data's shapes (the input width comes from them).
        self.parts = self.experiment.parts_for(data)
        models: list[MultiTaskModel] = []
        slots: list[Slot] = []
        for r, tag in zip(resolved, tags, strict=True):
            model, slot = new_trial(r, tag, self.experiment, self.parts, self.device)
            models.append(model)
            slots.append(slot)
        # Free slots hold a copy of the first model until refilled (their rows are masked).
        models += [models[0]] * (num_slots - len(models))
        stacked = stack_trials(models)
        self.params, self.buffers, self.spec = stacked.params, stacked.buffers, stacked.spec
        self._targets, self.template = stacked.targets, stacked.template
        self.slots: list[Slot | None] = [*slots, *([None] * (num_slots - len(slots)))]
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

        self.n_train = len(data.train)
        # MoDo, SDMGrad read n independent batches per step: an epoch has n times fewer steps.
        self.order = EpochOrder(
            self.n_train,
            self.batch_size,
            self.strategy.batches_per_step,
            self.data_seed,
            data.train.x.device,
        )
        self.steps_per_epoch = self.order.steps_per_epoch
        self._finished: list[FinishedTrial] = []
        forward_cls = DirectForward if num_slots == 1 else StackedForward
        self._evaluator = SlotEvaluator(
            forward_cls(self.template),
            self.device,
            precision,
            self.batch_size,
            num_slots,
        )
        self._slot_step = SlotStep(
            self.params,
            self.buffers,
            self._targets,
            self.spec,
            self.template,
            self.strategy,
            self.optimizer,
            self.clip,
            self.experiment,
            self._losses,
            self.space,
            data,
            self.batch_size,
            self.device,
            precision,
            compile,
        )
        self.reported_epochs = 0
        self._all_live = False
        self._version = 0  # bumped by every optimizer step (invalidates the test outputs)

    # --- construction ----------------------------------------------------------------------

    def _resolve(self, config: TrialConfig) -> ResolvedConfig:
        resolved = resolve_config(config, self.experiment)
        if batch_key(resolved, epochs=False) != self.key:
            raise ConfigError("trial does not fit this batch (see can_batch_together)")
        if config.data_seed is not None and config.data_seed != self.data_seed:
            raise ConfigError(
                f"trial has data_seed {config.data_seed}, this batch shares {self.data_seed}"
            )
        return resolved.model_copy(update={"data_seed": self.data_seed})

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
        if self.num_slots > 1 and not batchable(config):
            raise ConfigError("this trial cannot share a batch; train it alone")
        resolved = self._resolve(config)
        tag = slot if tag is None else tag
        model, new = new_trial(resolved, tag, self.experiment, self.parts, self.device)
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

    def parameters_changed(self) -> None:
        """The slots' parameters changed outside a step (a slot copied): test outputs of the
        old ones are stale."""
        self._version += 1

    def pop_finished(self) -> list[FinishedTrial]:
        """Trials that finished (all epochs, or diverged) since the last call."""
        out, self._finished = self._finished, []
        return out

    def _finish(self, slot: int, reason: str | None) -> FinishedTrial:
        state = self.slots[slot]
        if state is None:
            raise ValueError(f"slot {slot} is free")
        # Every trial that leaves at this epoch boundary shares one pass over the test split.
        test_outputs = self._evaluator.test_outputs(
            self._version, self.params, self.buffers, self.data.test
        )
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
            num_slots=self.num_slots,
            population=state.population,
        )
        self.slots[slot] = None
        self.strategy.release_slot(slot)
        return FinishedTrial(slot, state.tag, result)

    # --- the step --------------------------------------------------------------------------

    def _step(
        self, batches: list[Tensor], batched: bool, scale: Tensor, occupied: Tensor
    ) -> tuple[Tensor, Tensor]:
        """One optimisation step of every slot (`SlotStep.step`); the test outputs of the
        parameters before it are stale."""
        out = self._slot_step.step(
            batches, batched, scale, occupied, self.slots, self._clipping, self._all_live
        )
        self._version += 1
        return out

    def probe_step(self) -> None:
        """One training step and one evaluation chunk on the first batch (memory probes).

        The trials' state changes: use a throw-away run.
        """
        live = self.occupied()
        occupied = torch.zeros(self.num_slots, dtype=torch.bool)
        occupied[live] = True
        batches = self.order.step_batches(self.order.permutation(0), 0)
        self._step(batches, False, self.fixed_weights, occupied.to(self.device))
        size = self._evaluator.chunk_size
        probe = Split(self.data.val.x[:size], [t[:size] for t in self.data.val.targets])
        self._evaluator.predict(self.params, self.buffers, probe)

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
        occupied = torch.zeros(self.num_slots, dtype=torch.bool)
        occupied[live] = True
        occupied = occupied.to(self.device)
        self._all_live = len(live) == self.num_slots
        slot_epoch = [epochs.get(i, distinct[0]) for i in range(self.num_slots)]
        table = schedule_table(self.slots, epochs, self.steps_per_epoch, self.num_tasks).to(
            self.device, non_blocking=True
        )
        loss_sum = torch.zeros(self.num_slots, self.num_tasks, device=self.device)
        weight_sum = torch.zeros_like(loss_sum)
        bad = torch.zeros(self.num_slots, self.num_tasks, dtype=torch.bool, device=self.device)
        bad_step = torch.zeros(self.num_slots, dtype=torch.bool, device=self.device)
        rows = self.order.epoch_rows(slot_epoch)  # [N], or [K, N] when epochs differ
        for s in range(self.steps_per_epoch):
            scale = self.fixed_weights * table[s]
            losses, weights = self._step(self.order.step_batches(rows, s), batched, scale, occupied)
            bad |= ~torch.isfinite(losses)
            # A finite loss with a non-finite step: the task gradients or the solver.
            bad_step |= ~torch.isfinite(weights).all(dim=-1)
            loss_sum += losses
            weight_sum += weights
            if advance is not None:
                advance(1)
        mean_losses = loss_sum / self.steps_per_epoch
        self.strategy.on_epoch_end(occupied, mean_losses)
        val_outputs = self._evaluator.predict(self.params, self.buffers, self.data.val)
        # One host transfer per epoch for the flags, losses and weights of every slot.
        host_bad = (bad.any(dim=-1) | bad_step).cpu().tolist()
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
                self._finished.append(self._finish(index, divergence_reason(slot, names)))
                continue
            outputs = [o[index] for o in val_outputs]
            report = record_epoch(
                slot,
                self.experiment,
                outputs,
                self.data.val.targets,
                host_losses[index],
                host_weights[index],
            )
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
