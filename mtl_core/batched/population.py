"""Population-based training inside one batched pass: a slot becomes a copy of another.

The population is the K slots of a `BatchedRun`. *Exploit* is `copy_slot`: the target slot
takes the source slot's whole training state, on the device, and from then on trains exactly
as the source would (bit for bit: the trainer's arithmetic does not depend on which slot a
trial is in, `mtl_core.batched`). *Explore* changes the copy's hyper-parameters, e.g. its
fixed loss weights with `set_fixed_weights`.

Both are called *between epochs only* (after `BatchedRun.run_epoch` returned, never from its
``advance`` callback): within an epoch the schedule's multipliers of every step are already
drawn and the epoch's sums are half made.

What makes up a slot's state, and where `copy_slot` copies it from:

* the stacked model: row ``source`` of every tensor of ``run.params`` and ``run.buffers``
  (BatchNorm's running statistics included);
* the run's `StackedOptimizer` (`StackedOptimizer.copy_slot`): its rows of the parameters it
  updates (the model's and the strategy's learnable tensors), of the moments or momentum
  buffer, the step count, the momentum flag, the learning rate and the weight decay;
* the run's other per-slot hyper-parameters: ``run.clip`` and ``run.fixed_weights``;
* the strategy's per-slot state (`copy_strategy_slot`);
* the trial (`Slot`): its resolved config, its epoch counter, its schedule (a copy of the
  source's object, its draws included) and the state of its random generator, so the target
  draws the numbers the source would draw next. The target keeps its own generator object,
  ``tag``, ``history`` and ``started``: it is still its own trial, now continuing another.

This is the whole state a slot's next epoch reads: the data order is the run's (one
permutation per epoch number, shared by every slot), the validation batches of meta-learned
strategies come from the trial's generator, and the rest of the run is shared by all slots
and holds nothing per slot.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
from pydantic import ValidationError
from torch import Tensor

from mtl_core.batched.slots import Slot
from mtl_core.batched.trainer import BatchedRun
from mtl_core.config import TrialConfig
from mtl_core.optim import StackedOptimizer
from mtl_core.trial_setup import resolve_config
from mtl_core.weighting import MixedStrategy, WeightingStrategy, parse_strategy_config

logger = logging.getLogger(__name__)

__all__ = ["Population", "copy_slot", "copy_strategy_slot", "set_fixed_weights"]

#: ``explore(weights, generator)``: a member's new fixed weights from the ones it copied.
Explore = Callable[[dict[str, float], torch.Generator], dict[str, float]]

#: Attributes of a strategy that are not copied: the slot's context is the trial's own (the
#: target's context is set by `WeightingStrategy.reset_slot`).
_NOT_COPIED = frozenset({"contexts"})
#: Attribute values that hold no per-slot state.
_STATELESS = (bool, int, float, str, type(None), torch.device, torch.dtype)


def _live_slot(run: BatchedRun, index: int, role: str) -> Slot:
    """The trial in slot ``index`` (``role`` names the slot in errors: "source slot")."""
    if not 0 <= index < run.num_slots:
        raise ValueError(f"{role} must be in 0..{run.num_slots - 1}, got {index}")
    state = run.slots[index]
    if state is None:
        raise ValueError(f"{role} {index} is free: it holds no trial")
    return state


def copy_slot(run: BatchedRun, source: int, target: int) -> None:
    """Make slot ``target`` continue exactly as slot ``source`` will (PBT's exploit).

    Both slots must hold a live trial of the same strategy; call it between epochs only.
    What is copied, and why that is all, is this module's docstring.

    Raises:
        ValueError: a slot is out of range or free, the two are the same slot, or they hold
            different strategies (their state has different shapes and meanings).
    """
    src = _live_slot(run, source, "source slot")
    dst = _live_slot(run, target, "target slot")
    if source == target:
        raise ValueError(f"source and target must be different slots, got {source} twice")
    if src.config.strategy != dst.config.strategy:
        raise ValueError(
            f"slots {source} and {target} hold different strategies "
            f"({src.config.strategy!r} and {dst.config.strategy!r}); copy_slot copies a "
            "slot onto one of the same strategy"
        )
    config = src.config.model_copy(deep=True)
    # The target keeps its generator object; everything else of its context is the source's.
    ctx = replace(src.ctx, generator=dst.ctx.generator)
    # The strategy's slot restarts as the source's trial with the target's context (this sets
    # the owner and every nested context), then every per-slot value is copied over.
    run.strategy.reset_slot(
        target,
        config.strategy,
        parse_strategy_config(config.strategy, config.strategy_params),
        ctx,
    )
    copy_strategy_slot(run.strategy, source, target)
    with torch.no_grad():
        for stacked in (run.params, run.buffers):
            for tensor in stacked.values():
                tensor[target] = tensor[source]
        run.clip[target] = run.clip[source]
        run.fixed_weights[target] = run.fixed_weights[source]
    run.optimizer.copy_slot(source, target)
    # Last, after anything above that could draw from it.
    ctx.generator.set_state(src.ctx.generator.get_state())
    dst.config = config
    dst.ctx = ctx
    # A copy of the source's schedule (its past draws included) that reads the target's context.
    dst.schedule = copy.deepcopy(src.schedule, {id(src.ctx): ctx})
    dst.epoch = src.epoch
    # The run's cached test-split outputs are keyed by this counter: the target's row changed.
    run.parameters_changed()
    logger.debug("slot %d continues the trial of slot %d from epoch %d", target, source, src.epoch)


def copy_strategy_slot(
    strategy: WeightingStrategy[Any] | MixedStrategy, source: int, target: int
) -> None:
    """Copy slot ``source``'s state to slot ``target`` in every part of ``strategy``, in place.

    Written once for every strategy, from the package's convention (`mtl_core.weighting`): a
    strategy keeps its per-slot state in its attributes as tensors of leading dimension K
    (``num_slots``) and, for values the host must know without a sync, as lists of length K
    (Nash-MTL's step counters, SDMGrad's iteration counts, CR-MOGM's base per slot) or sets
    of slot indices (Auto-λ's slots with the exact hypergradient). The walk goes through
    every attribute, into lists, tuples and dicts, into member strategies (a
    `MixedStrategy`'s members, CR-MOGM's bases) and into a strategy's own `StackedOptimizer`
    (FAMO's, Auto-λ's, via `StackedOptimizer.copy_slot`), and copies

    * row ``source`` to row ``target`` of every tensor whose leading dimension is K;
    * entry ``source`` to entry ``target`` of every list of length K held by a strategy whose
      entries hold no tensor, strategy or optimizer (per-slot host values);
    * ``source``'s membership of every set of slot indices to ``target``;

    except the strategies' ``contexts`` (each slot reads its own trial's context). Any other
    kind of attribute value is a `TypeError`: state the walk cannot copy is not skipped.
    A free slot must not be ``target``: its owner and contexts would not follow; `copy_slot`
    sets them with `WeightingStrategy.reset_slot` first.
    """
    with torch.no_grad():
        _copy_rows(strategy, source, target, strategy.num_slots, set(), type(strategy).__name__)


def _holds_state(value: object) -> bool:
    """Whether ``value`` is or contains a tensor, strategy or optimizer."""
    if isinstance(value, Tensor | StackedOptimizer | WeightingStrategy | MixedStrategy):
        return True
    if isinstance(value, dict):
        return any(_holds_state(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_state(v) for v in value)
    return False


def _copy_rows(
    value: object, source: int, target: int, num_slots: int, seen: set[int], path: str
) -> None:
    if isinstance(value, _STATELESS):
        return
    if id(value) in seen:  # a tensor or strategy reachable twice (copying is idempotent anyway)
        return
    seen.add(id(value))
    if isinstance(value, Tensor):
        if value.dim() > 0 and value.shape[0] == num_slots:
            value[target] = value[source]
    elif isinstance(value, StackedOptimizer):
        value.copy_slot(source, target)
    elif isinstance(value, WeightingStrategy | MixedStrategy):
        owned = isinstance(value, WeightingStrategy)
        for name, attr in vars(value).items():
            if name in _NOT_COPIED:
                continue
            if (
                owned
                and isinstance(attr, list)
                and len(attr) == num_slots
                and not _holds_state(attr)
            ):
                attr[target] = copy.deepcopy(attr[source])
            else:
                _copy_rows(attr, source, target, num_slots, seen, f"{path}.{name}")
    elif isinstance(value, set) and all(isinstance(item, int) for item in value):
        # A set of slot indices (a per-slot flag kept on the host): membership is copied.
        if source in value:
            value.add(target)
        else:
            value.discard(target)
    elif isinstance(value, dict):
        for key, item in value.items():
            _copy_rows(item, source, target, num_slots, seen, f"{path}[{key!r}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _copy_rows(item, source, target, num_slots, seen, f"{path}[{index}]")
    else:
        raise TypeError(
            f"cannot copy a slot's state held in {path} ({type(value).__name__}): per-slot "
            "state must be tensors of leading dim K, lists of length K or sets of slot indices"
        )


def set_fixed_weights(run: BatchedRun, slot: int, weights: dict[str, float]) -> None:
    """Give the trial in ``slot`` new fixed loss weights from its next step on (PBT's explore).

    ``weights`` names every task of the experiment, each a finite number >= 0, at least one
    > 0 (the checks of a trial's config, `TrialConfig` and `resolve_config`). Both the run's
    ``fixed_weights`` row and the trial's resolved config change, so its result records what
    it trained with last. Between epochs only, like `copy_slot`.

    Raises:
        ValueError: the slot is free or out of range, or a weight is unknown, missing,
            negative or not finite, or every weight is 0.
    """
    state = _live_slot(run, slot, "slot")
    try:
        trial = TrialConfig(experiment=run.experiment.name, weights=weights)
    except ValidationError as error:
        raise ValueError(f"fixed weights of slot {slot}: {error.errors()[0]['msg']}") from None
    checked = resolve_config(trial, run.experiment).weights
    names = run.experiment.task_names
    missing = [task for task in names if task not in weights]
    if missing:
        raise ValueError(
            f"fixed weights of slot {slot} must name every task; missing {', '.join(missing)}"
        )
    with torch.no_grad():
        run.fixed_weights[slot] = torch.tensor(
            [checked[task] for task in names],
            dtype=run.fixed_weights.dtype,
            device=run.fixed_weights.device,
        )
    state.config = state.config.model_copy(update={"weights": checked})


class Population:
    """Population-based training of the fixed loss weights over some slots of a run.

    Jaderberg et al., "Population Based Training of Neural Networks" (2017), as Ray Tune's
    ``PopulationBasedTraining`` does it, inside one batched pass: the members are slots, and at
    each `step` (between epochs) the bottom ``quantile`` of the members by score copy a member
    of the top ``quantile`` (`copy_slot`, on the device) and ``explore`` their weights
    (`set_fixed_weights`). Every draw (which top member, and the explore's) comes from
    ``generator``, so the same members, scores and generator give the same trajectories.

    Each member's `Slot.population` records its trajectory (``{"epoch": e, "weights": ...}``,
    the fixed weights in force after ``e`` epochs, from 0) and lineage (``{"epoch": e,
    "source": label}``: after ``e`` epochs it took the state of the member ``label`` names);
    its `TrialResult.population` carries them out.

    Args:
        run: the batched run holding the members.
        members: their slots (live, at the same epoch).
        quantile: the share of members replaced at each step (and the share copied from):
            ceil(quantile × members), at most half of them; with fewer than two members no
            step changes anything (a population of one is the plain trial).
        generator: the population's seeded generator.
        label: what names a member's trial in another's lineage (its tag → e.g. its number).
    """

    def __init__(
        self,
        run: BatchedRun,
        members: Sequence[int],
        quantile: float,
        generator: torch.Generator,
        label: Callable[[Any], Any],
    ) -> None:
        if not 0 < quantile <= 0.5:
            raise ValueError(f"quantile must be in (0, 0.5], got {quantile}")
        self.run = run
        self.members = list(members)
        self.quantile = quantile
        self.generator = generator
        self.label = label
        for index in self.members:
            state = _live_slot(run, index, "member")
            state.population = {
                "trajectory": [{"epoch": state.epoch, "weights": dict(state.config.weights)}],
                "lineage": [],
                "epochs": state.config.epochs,
            }

    def live(self) -> list[int]:
        """The members still training."""
        return [i for i in self.members if self.run.slots[i] is not None]

    def step(self, scores: Mapping[int, float], explore: Explore) -> list[tuple[int, int]]:
        """Exploit and explore after an epoch; returns the ``(source, target)`` slot pairs.

        ``scores``: each live member's score (higher is better); a member without a finite one
        ranks last. Ties rank by slot, so the outcome never depends on dict order.
        """
        live = self.live()
        count = min(math.ceil(self.quantile * len(live)), len(live) // 2)
        if count == 0:
            return []

        def rank(index: int) -> tuple[float, int]:
            score = scores.get(index, -math.inf)
            return (score if math.isfinite(score) else -math.inf, -index)

        ordered = sorted(live, key=rank)  # worst first
        bottom, top = ordered[:count], ordered[-count:]
        pairs = []
        for target in bottom:
            source = top[int(torch.randint(len(top), (1,), generator=self.generator))]
            copy_slot(self.run, source, target)
            state = self.run.slots[target]
            source_state = self.run.slots[source]
            assert state is not None and source_state is not None
            weights = explore(dict(state.config.weights), self.generator)
            set_fixed_weights(self.run, target, weights)
            log = state.population
            assert log is not None  # every member has one from the start
            log["lineage"].append({"epoch": state.epoch, "source": self.label(source_state.tag)})
            log["trajectory"].append({"epoch": state.epoch, "weights": dict(state.config.weights)})
            pairs.append((source, target))
        logger.debug("population step: %s", pairs)
        return pairs
