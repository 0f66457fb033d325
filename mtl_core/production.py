"""Use a study's best result in your own training script.

`build_loss_from_best(best)` turns the record that ``GET /api/v1/studies/{id}/best`` (or
``mtlsearch best ID --format json``) returns into a ready `MultiTaskLoss`: the fixed weights the
study found, or the tuned dynamic strategy with its hyper-parameters; with
``effective_weights=True``, fixed weights equal to those the trial actually applied
(`effective_loss_weights`). A trial trained in a population (PBT) changed its fixed weights
during training: its loss follows the same trajectory, epoch by epoch or as a fraction of
your run.
It works with any PyTorch model: you tell it which parameters are shared between the tasks.

    best = Client(url).best(study_id)
    mtl_loss = build_loss_from_best(best, device="cuda")
    optimizer = torch.optim.Adam([*model.parameters(), *mtl_loss.parameters()], lr=...)
    for x, ys in loader:
        outputs = model(x)
        losses = {task: loss_fn[task](outputs[task], ys[task]) for task in mtl_loss.task_names}
        optimizer.zero_grad()
        mtl_loss.backward(losses, shared_parameters=list(model.trunk.parameters()),
                          task_parameters=list(model.heads.parameters()))
        optimizer.step()
    # once per epoch: mtl_loss.epoch_end(mean_losses_of_the_epoch) (DWA and STCH read them;
    # a population record's fixed weights move along its trajectory here)
    # MoDo / SDMGrad (mtl_loss.batches_per_step == 3): each step takes three batches; pass
    # the first two's losses as backward(losses_of_the_third, ..., extra_losses=[l1, l2]).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from mtl_core.context import TaskContext
from mtl_core.errors import ConfigError
from mtl_core.results import planned_epochs, population_trajectory
from mtl_core.weighting import (
    STRATEGIES,
    MixedStrategy,
    StepInputs,
    WeightingStrategy,
    parse_strategy_config,
    strategy_gradients,
)

if TYPE_CHECKING:
    from mtl_core.architectures import MultiTaskModel
    from mtl_core.experiments import DataShapes, DataSplits, Experiment

#: Fixed weights from an epoch on: ``(epochs completed, {task: weight})``, by epoch.
WeightsSchedule = Sequence[tuple[int, Mapping[str, float]]]


class MultiTaskLoss(nn.Module):
    """A weighting strategy with fixed per-task weights, ready for a training loop.

    Args:
        task_names: the tasks, in the order losses are given.
        strategy: a registered strategy name (``fixed`` for plain weighted sums).
        strategy_params: the strategy's hyper-parameters.
        weights: fixed per-task weights (tasks not named get 1.0).
        epochs: planned epochs (strategies that depend on progress read it).
        device: where the strategy's own tensors live.
        seed: seeds the strategy's random draws (RLW, PCGrad's order).
        weights_schedule: fixed weights that replace ``weights`` once ``epoch`` calls of
            `epoch_end` have been made (entry ``(0, w)``: from the start), epochs strictly
            increasing; tasks not named get 1.0. ``epochs_done`` counts the calls.
    """

    def __init__(
        self,
        task_names: Sequence[str],
        strategy: str = "fixed",
        strategy_params: Mapping[str, Any] | None = None,
        weights: Mapping[str, float] | None = None,
        epochs: int = 1,
        device: torch.device | str = "cpu",
        seed: int = 0,
        weights_schedule: WeightsSchedule = (),
    ) -> None:
        super().__init__()
        self.task_names = tuple(task_names)
        initial = self._weight_vector(weights or {}, "weight")
        self._schedule: dict[int, list[float]] = {}
        for index, (epoch, scheduled) in enumerate(weights_schedule):
            last = max(self._schedule, default=-1)
            if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch <= last:
                raise ConfigError(
                    f"weights_schedule[{index}] starts at epoch {epoch!r}: epochs must be "
                    f"integers >= 0, strictly increasing (the one before: {last})"
                )
            self._schedule[epoch] = self._weight_vector(scheduled, f"weights_schedule[{index}]")
        #: Calls of `epoch_end` so far: the schedule's entry for this many epochs applies.
        self.epochs_done = 0
        if STRATEGIES.get(strategy).reads_validation:
            raise ConfigError(
                f"strategy {strategy!r} learns its weights from validation batches through a "
                "look-ahead step of the model, which a MultiTaskLoss does not see; train with "
                "the weights it learned: build_loss_from_best(best, effective_weights=True)"
            )
        self.device = torch.device(device)
        ctx = TaskContext(self.task_names, self.device, epochs, torch.Generator().manual_seed(seed))
        config = parse_strategy_config(strategy, dict(strategy_params or {}))
        # The training core's strategy at K = 1: the same code that trained the study.
        self.strategy = MixedStrategy([strategy], 1, len(self.task_names), self.device)
        self.strategy.reset_slot(0, strategy, config, ctx)
        self.space = STRATEGIES.get(strategy).gradient_space(config)
        #: Independent batches each `backward` reads (MoDo, SDMGrad: 3; see ``extra_losses``).
        self.batches_per_step = STRATEGIES.get(strategy).batches_per_step
        # A strategy that overrides the hook learns from each epoch's mean losses (DWA, STCH).
        self._reads_epoch_losses = (
            STRATEGIES.get(strategy).on_epoch_end is not WeightingStrategy.on_epoch_end
        )
        self.strategy_parameters = nn.ParameterList(self.strategy.parameters())
        self.fixed_weights: Tensor
        self.register_buffer("fixed_weights", torch.tensor(initial, device=self.device))
        self._apply_schedule()

    def _weight_vector(self, weights: Mapping[str, float], what: str) -> list[float]:
        """Per-task weights in task order (1.0 for a task not named); unknown tasks refused."""
        unknown = sorted(set(weights) - set(self.task_names))
        if unknown:
            raise ConfigError(
                f"{what} given for unknown task {unknown[0]!r}; valid tasks: "
                f"{', '.join(self.task_names)}"
            )
        return [float(weights.get(t, 1.0)) for t in self.task_names]

    def _apply_schedule(self) -> None:
        scheduled = self._schedule.get(self.epochs_done)
        if scheduled is not None:
            with torch.no_grad():
                self.fixed_weights.copy_(torch.tensor(scheduled))

    def _stack(self, losses: Mapping[str, Tensor] | Sequence[Tensor]) -> Tensor:
        if isinstance(losses, Mapping):
            missing = [t for t in self.task_names if t not in losses]
            if missing:
                raise ConfigError(f"no loss given for task(s) {', '.join(missing)}")
            return torch.stack([losses[t].reshape(()) for t in self.task_names])
        if len(losses) != len(self.task_names):
            raise ConfigError(f"expected {len(self.task_names)} losses, got {len(losses)}")
        return torch.stack([loss.reshape(()) for loss in losses])

    def backward(
        self,
        losses: Mapping[str, Tensor] | Sequence[Tensor],
        shared_parameters: Sequence[nn.Parameter],
        task_parameters: Sequence[nn.Parameter] = (),
        last_shared_parameters: Sequence[nn.Parameter] | None = None,
        representation: Tensor | None = None,
        extra_losses: Sequence[Mapping[str, Tensor] | Sequence[Tensor]] = (),
    ) -> dict[str, float]:
        """Back-propagate one step of the strategy; returns this step's weights (Σ = T).

        A strategy that reads several independent batches per step (``batches_per_step`` =
        n > 1: MoDo, SDMGrad) takes the task losses of n - 1 further batches, each computed
        with the same parameters, in ``extra_losses``; ``losses`` is the batch the update is
        computed on.
        """
        needed = self.batches_per_step - 1
        if len(extra_losses) != needed:
            raise ConfigError(
                f"strategy {self.strategy.names[0]!r} reads {self.batches_per_step} independent "
                f"batch(es) per step: pass the losses of {needed} more as extra_losses "
                f"(got {len(extra_losses)})"
            )
        stacked = self._stack(losses).unsqueeze(0)
        shared = list(shared_parameters)
        task_specific = list(task_parameters)
        inputs = StepInputs(
            losses=stacked,
            scale=self.fixed_weights.unsqueeze(0),
            last_shared=list(last_shared_parameters or shared),
            occupied=torch.ones(1, dtype=torch.bool, device=self.device),
            extra_losses=tuple(self._stack(other).unsqueeze(0) for other in extra_losses),
        )
        shared_grads, task_grads, strategy_grads, weights = strategy_gradients(
            self.strategy, inputs, shared, task_specific, self.space, representation
        )
        tensors = [*shared, *task_specific, *self.strategy.parameters()]
        with torch.no_grad():
            for p, g in zip(tensors, [*shared_grads, *task_grads, *strategy_grads], strict=True):
                p.grad = g.detach().clone() if p.grad is None else p.grad + g
        return dict(zip(self.task_names, weights[0].tolist(), strict=True))

    def epoch_end(self, mean_losses: Mapping[str, float] | Sequence[float] | None = None) -> None:
        """One epoch ended: tell epoch-level strategies (DWA, STCH) the epoch-mean loss of each
        task, and move the fixed weights to the ``weights_schedule`` entry for the epochs now
        done. ``mean_losses`` may be left out under a strategy that reads none (``fixed``).

        Raises:
            ConfigError: no ``mean_losses`` for a strategy that learns from them.
        """
        if mean_losses is not None:
            values = (
                [mean_losses[t] for t in self.task_names]
                if isinstance(mean_losses, Mapping)
                else list(mean_losses)
            )
            self.strategy.on_epoch_end(
                torch.ones(1, dtype=torch.bool, device=self.device),
                torch.tensor([values], device=self.device),
            )
        elif self._reads_epoch_losses:
            raise ConfigError(
                f"strategy {self.strategy.names[0]!r} learns from each epoch's mean task "
                "losses: pass them, epoch_end(mean_losses), got None"
            )
        self.epochs_done += 1
        self._apply_schedule()


def build_loss_from_best(
    best: Mapping[str, Any],
    device: torch.device | str = "cpu",
    seed: int = 0,
    effective_weights: bool = False,
    trajectory: Literal["epoch", "fraction"] = "epoch",
    epochs: int | None = None,
) -> MultiTaskLoss:
    """Build a `MultiTaskLoss` from a study's best trial (or any trial's record).

    ``best`` is the JSON of ``GET /api/v1/studies/{id}/best``, or of one trial
    (``GET /api/v1/studies/{id}/trials/{number}``). What it rebuilds:

    * default, the strategy as searched: its name and hyper-parameters, the fixed per-task
      weights of ``config.weights`` (what ``fixed`` searched; 1, or the spec's fixed numbers,
      under a dynamic strategy) and the epochs. A dynamic strategy then adapts its weights to
      the losses of *your* training, as it did in the study's; ``seed`` seeds its draws (RLW,
      PCGrad's order). The study's model, data and data order are yours, not rebuilt.
    * ``effective_weights=True``: the ``fixed`` strategy with the weights the trial actually
      applied to its task losses, each ``config.weights[t] × strategy_weights[t]``. A
      strategy's own weights λ_t (``strategy_weights``: their mean over the last epoch, Σ =
      number of tasks; all 1 under ``fixed``) multiply the fixed weights, so the product is
      the weight of L_t in the trial's objective, up to a common factor (a schedule's
      multipliers aside). This freezes what a dynamic strategy ended at, for a loop without
      its state; for a gradient method (PCGrad, MGDA, CAGrad) it keeps the average task
      weighting, not the per-step projection. Per epoch: the record's ``weights_trajectory``.
    * a record with ``population`` (the trial trained in a population, PBT: its fixed weights
      changed during training): the strategy as searched, its fixed weights following the
      record's ``population.trajectory``, one `MultiTaskLoss.epoch_end` call per epoch.
      ``trajectory="epoch"`` applies the entry for study epoch e after e calls;
      ``"fraction"`` after round(e / population.epochs × ``epochs``) calls, so a longer or
      shorter run changes its weights at the same share of its training. With
      ``effective_weights=True`` the trajectory's last weights that the trial trained with
      stand in for ``config.weights`` (frozen, no schedule: `effective_loss_weights`).

    Args:
        epochs: your run's planned epochs (strategies that depend on progress read them);
            needed for ``trajectory="fraction"``; default the record's ``config.epochs``.

    Raises:
        ConfigError: the record has no ``config`` with ``strategy`` and ``weights``; with
            ``effective_weights``, no finite ``strategy_weights`` (a trial recorded before they
            were kept, or one that trained no epoch); ``trajectory`` not "epoch" or
            "fraction", or "fraction" without ``epochs``; a malformed ``population``.
    """
    if trajectory not in ("epoch", "fraction"):
        raise ConfigError(f"trajectory must be 'epoch' or 'fraction', got {trajectory!r}")
    if epochs is not None and (type(epochs) is not int or epochs < 1):
        raise ConfigError(f"epochs must be an integer >= 1, got {epochs!r}")
    if trajectory == "fraction" and epochs is None:
        raise ConfigError(
            "trajectory='fraction' maps the study's epochs onto your run's: pass "
            "epochs=<your run's planned epochs>, got epochs=None"
        )
    config = best.get("config")
    if not isinstance(config, Mapping) or "strategy" not in config or "weights" not in config:
        raise ConfigError(
            "best record has no 'config' with 'strategy' and 'weights'; pass the JSON of "
            "GET /api/v1/studies/{id}/best"
        )
    weights: Mapping[str, float] = config["weights"]
    planned = epochs or int(config.get("epochs") or 1)
    if effective_weights:
        return MultiTaskLoss(
            task_names=list(weights),
            weights=effective_loss_weights(best),
            epochs=planned,
            device=device,
            seed=seed,
        )
    steps = population_trajectory(best.get("population"), weights)
    if steps and trajectory == "fraction":
        assert epochs is not None  # checked above
        study_epochs = planned_epochs(best["population"])
        # Two study epochs may round to one of yours: the later weights win.
        steps = list({round(e / study_epochs * epochs): w for e, w in steps}.items())
    return MultiTaskLoss(
        task_names=list(weights),
        strategy=config["strategy"],
        strategy_params=config.get("strategy_params") or {},
        weights=weights,
        epochs=planned,
        device=device,
        seed=seed,
        weights_schedule=steps,
    )


def _last_trained_weights(
    record: Mapping[str, Any], weights: Mapping[str, float]
) -> dict[str, float] | None:
    """A population member's last fixed weights that it trained an epoch with (an entry from
    its last epoch on never applied), None for a record without ``population``."""
    population = record.get("population")
    steps = population_trajectory(population, weights)
    if not steps or population is None:
        return None
    ran = record.get("epochs_run") or population.get("epochs")
    if isinstance(ran, int) and ran > 0:
        steps = [step for step in steps if step[0] < ran] or steps[:1]
    return steps[-1][1]


def effective_loss_weights(record: Mapping[str, Any]) -> dict[str, float]:
    """The weight each task's loss had in a recorded trial's objective:
    ``config.weights[t] × strategy_weights[t]`` (see `build_loss_from_best`), in task order.
    For a population member (a record with ``population``) the fixed weights are the last
    of its trajectory that it trained with, as ``strategy_weights`` are its last epoch's.

    Raises:
        ConfigError: no config weights, no finite ``strategy_weights`` for every task, or a
            malformed ``population`` (`mtl_core.results.population_trajectory`).
    """
    config = record.get("config")
    weights = config.get("weights") if isinstance(config, Mapping) else None
    if not isinstance(weights, Mapping) or not weights:
        raise ConfigError("record has no 'config' with 'weights'; pass a trial or best record")
    weights = _last_trained_weights(record, weights) or weights
    applied = record.get("strategy_weights")
    tasks = list(weights)
    values = [applied.get(t) for t in tasks] if isinstance(applied, Mapping) else []
    finite = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]
    if len(finite) != len(tasks):
        raise ConfigError(
            "record has no finite 'strategy_weights' for every task (the weights its strategy "
            f"applied), got {applied!r}: pass the record of a trial that trained at least one "
            "epoch, recorded by a server that keeps them, or use effective_weights=False"
        )
    return {t: float(weights[t]) * v for t, v in zip(tasks, finite, strict=True)}


def build_model_from_best(
    best: Mapping[str, Any],
    experiment: Experiment | str | None = None,
    data: DataSplits | DataShapes | None = None,
) -> MultiTaskModel:
    """The network the best trial trained: its experiment's trunk blocks and heads, shared by
    the trial's architecture with its hyper-parameters, initialised as the trial began.

    Train it with `build_loss_from_best`'s loss; the split of shared and task parameters that
    gradient methods need is the model's own (``model.shared_parameters()``,
    ``model.task_parameters()``, ``model.last_shared_parameters()``).

        model = build_model_from_best(best, data=my_experiment.load(data_dir))
        mtl_loss = build_loss_from_best(best)
        ... mtl_loss.backward(losses, shared_parameters=model.shared_parameters(),
                              task_parameters=model.task_parameters())

    Args:
        best: the JSON of ``GET /api/v1/studies/{id}/best`` (or of one trial).
        experiment: an `Experiment` (your own, or a built-in), or a registered name; default
            the record's ``config.experiment``.
        data: the loaded splits (or their `DataShapes`) the network is built for; default the
            experiment's `Experiment.nominal_shapes` (the built-ins know theirs).

    Raises:
        ConfigError: the record has no ``config`` naming its experiment, the experiment cannot
            tell its data's shapes without them (pass ``data``), or its parts cannot serve the
            architecture.
    """
    from mtl_core.architectures import build_model
    from mtl_core.experiments import get_experiment

    config = best.get("config")
    if not isinstance(config, Mapping) or not (experiment or config.get("experiment")):
        raise ConfigError(
            "best record has no 'config' naming its experiment; pass the JSON of "
            "GET /api/v1/studies/{id}/best"
        )
    if experiment is None or isinstance(experiment, str):
        experiment = get_experiment(experiment or config["experiment"])
    shapes = data if data is not None else experiment.nominal_shapes()
    if shapes is None:
        raise ConfigError(
            f"experiment {experiment.name!r} cannot tell its data's shapes before loading "
            "them; pass data=experiment.load(data_dir)"
        )
    architecture = config.get("architecture") or experiment.defaults.architecture
    # The trial's own initialisation: the trainer seeds torch with the trial's seed just
    # before it builds the model (mtl_core.batched.slots.new_trial).
    torch.manual_seed(int(config.get("seed") or 0))
    return build_model(
        architecture, config.get("architecture_params") or {}, experiment.parts_for(shapes)
    )
