"""Run a study on this machine: Optuna's own loop over a local storage (``mtlsearch run``).

No service and no workers: one process asks, trains with `mtl_core.trainer.train_trial` and
tells, through Optuna's RDB storage on a SQLite file (or any SQLAlchemy URL). Each trial stores
its full resolved config and its metrics as user attributes (``config``, ``val_metrics``,
``test_metrics``, ``weights_normalised``, ``strategy_weights``), so optuna-dashboard and
`summarise_trial` show everything needed to reproduce it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from mtl_core.config import TrialConfig
from mtl_core.errors import TrainingDiverged, TrialStopped
from mtlsearch.search.objective import intermediate_value, objective_values
from mtlsearch.search.optuna_factory import (
    create_optuna_study,
    max_epochs,
    should_consider_pruning,
)
from mtlsearch.search.repeats import distinct_seed, repeated_trial
from mtlsearch.search.results import TrialOutcome, set_user_attrs
from mtlsearch.search.space import (
    normalised_weights,
    suggest_trial_config,
)
from mtlsearch.search.spec import ParamChoices, ParamRange, StudySpec
from mtlsearch.search.spec_checks import validate_against_experiment

if TYPE_CHECKING:
    from mtl_core.experiments import Experiment
    from mtl_core.results import TrialResult

logger = logging.getLogger(__name__)

#: The study user attribute holding the single-task baselines of a ``delta_m`` study.
BASELINES_ATTR = "baselines"
StudyCallback = Callable[[optuna.Study, FrozenTrial], None]


def run_trial(
    trial: optuna.Trial,
    spec: StudySpec,
    experiment: Experiment,
    *,
    data_dir: Path | str | None,
    device: str = "cpu",
    baselines: Mapping[str, float] | None = None,
) -> list[float]:
    """Suggest, train and score one trial; report each epoch for pruning.

    Returns the objective value(s). Raises `optuna.TrialPruned` when the pruner stops the
    trial and `TrainingDiverged` (recorded as user attr ``fail_reason``) when it diverges.
    """
    from mtl_core.trainer import train_trial

    config = suggest_trial_config(trial, spec, experiment, device)
    config = distinct_seed(trial, config, repeated_trial(trial))
    started = TrialOutcome(
        config=config.model_dump(mode="json"),
        weights_normalised=normalised_weights(config.weights, experiment.task_names),
    )
    set_user_attrs(trial, started.as_attrs())
    pruned: list[str] = []

    def on_epoch(report: Any) -> None:
        value = intermediate_value(report, spec, experiment, baselines)
        if value is None or not math.isfinite(value):
            return
        trial.report(value, report.epoch)
        if should_consider_pruning(report.epoch, config.strategy) and trial.should_prune():
            reason = f"pruned by the {spec.pruner} pruner after epoch {report.epoch}"
            pruned.append(reason)
            raise TrialStopped(reason)

    try:
        result = train_trial(config, data_dir, on_epoch=on_epoch)
    except TrialStopped as exc:
        raise optuna.TrialPruned(str(exc)) from None
    except TrainingDiverged as exc:
        set_user_attrs(trial, TrialOutcome(fail_reason=str(exc)).as_attrs())
        raise
    record_result(trial, result)
    if pruned:  # the trainer returned a partial result instead of re-raising
        raise optuna.TrialPruned(pruned[0])
    return objective_values(result, spec, experiment, baselines)


def result_attrs(result: TrialResult) -> dict[str, Any]:
    """A trained trial's resolved config and metrics, as trial user attributes."""
    return TrialOutcome.from_result(result).as_attrs()


def record_result(trial: optuna.Trial, result: TrialResult) -> None:
    """Store a trained trial's resolved config and metrics as user attributes."""
    set_user_attrs(trial, result_attrs(result))


def baseline_config(spec: StudySpec, device: str = "cpu") -> TrialConfig:
    """The settings single-task baselines train with: the spec's fixed settings, the largest
    epoch count it searches, the first architecture choice (its fixed parameters), and the
    experiment's defaults for everything searched."""
    space = spec.search_space
    architecture: str | None = None
    architecture_params: dict[str, Any] = {}
    if space.architectures:
        first = space.architectures[0]
        architecture = first.name
        architecture_params = {
            k: v for k, v in first.params.items() if not isinstance(v, ParamRange | ParamChoices)
        }

    def fixed(value: Any) -> Any:
        return None if isinstance(value, ParamRange | ParamChoices) else value

    return TrialConfig(
        experiment=spec.experiment,
        architecture=architecture,
        architecture_params=architecture_params,
        optimizer=space.optimizer,
        lr=fixed(space.lr),
        weight_decay=space.weight_decay or 0.0,
        epochs=max_epochs(spec),
        batch_size=fixed(space.batch_size),
        grad_clip=space.grad_clip,
        seed=spec.seed if spec.seed is not None else 0,
        data_seed=None,
        device=device,
        max_train_samples=space.max_train_samples,
    )


@dataclass
class LocalRun:
    """A study prepared on a local storage, ready to optimise."""

    spec: StudySpec
    study: optuna.Study
    experiment: Experiment
    data_dir: Path | str | None
    device: str = "cpu"
    baselines: dict[str, float] | None = None

    @property
    def finished(self) -> int:
        """Trials of the study that finished (complete, pruned or failed)."""
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        return len(self.study.get_trials(deepcopy=False, states=states))

    @property
    def remaining(self) -> int | None:
        """Trials still to run for ``spec.n_trials`` (None: bounded by time only)."""
        if self.spec.n_trials is None:
            return None
        return max(0, self.spec.n_trials - self.finished)

    def optimize(self, callbacks: Sequence[StudyCallback] = ()) -> None:
        """Run the remaining trials (within ``spec.time_budget_s``)."""
        remaining = self.remaining
        if remaining == 0:
            logger.info("study %r already has its %s trials", self.study.study_name, self.finished)
            return

        def objective(trial: optuna.Trial) -> float | list[float]:
            values = run_trial(
                trial,
                self.spec,
                self.experiment,
                data_dir=self.data_dir,
                device=self.device,
                baselines=self.baselines,
            )
            return values[0] if len(values) == 1 else values

        self.study.optimize(
            objective,
            n_trials=remaining,
            timeout=self.spec.time_budget_s,
            # A diverged trial is recorded as failed; the study goes on.
            catch=(TrainingDiverged,),
            callbacks=list(callbacks),
        )


def prepare_local_run(
    spec: StudySpec,
    storage: str | optuna.storages.BaseStorage,
    *,
    study_name: str | None = None,
    data_dir: Path | str | None = None,
    device: str = "cpu",
    experiment: Experiment | None = None,
) -> LocalRun:
    """Check ``spec``, create or load its study, and train the Δm% baselines if needed.

    Raises:
        SpecError: the spec does not fit its experiment, or the study exists with another spec.
    """
    from mtl_core.metrics_delta import single_task_baselines

    experiment = validate_against_experiment(spec, experiment)
    if isinstance(storage, str):
        storage = optuna.storages.RDBStorage(storage)
    study = create_optuna_study(
        storage, spec, study_name, experiment=experiment, load_if_exists=True
    )

    def train() -> dict[str, float]:
        logger.info("training single-task baselines of %r", spec.experiment)
        return single_task_baselines(spec.experiment, baseline_config(spec, device), data_dir)

    baselines = study_baselines(spec, study, train)
    return LocalRun(spec, study, experiment, data_dir, device, baselines)


def study_baselines(
    spec: StudySpec, study: optuna.Study, train: Callable[[], dict[str, float]]
) -> dict[str, float] | None:
    """The Δm% baselines of a ``delta_m`` study (None for other objectives), in this order:
    the spec's own, the study's ``baselines`` attribute, else ``train()``, whose result is
    stored in that attribute for the next reader."""
    if spec.objective.kind != "delta_m":
        return None
    if spec.objective.baselines is not None:
        return dict(spec.objective.baselines)
    stored = study.user_attrs.get(BASELINES_ATTR)
    if stored:
        return {str(k): float(v) for k, v in stored.items()}
    baselines = train()
    study.set_user_attr(BASELINES_ATTR, baselines)
    return baselines


def run_local(
    spec: StudySpec,
    storage: str | optuna.storages.BaseStorage,
    *,
    study_name: str | None = None,
    data_dir: Path | str | None = None,
    device: str = "cpu",
    experiment: Experiment | None = None,
    callbacks: Sequence[StudyCallback] = (),
) -> optuna.Study:
    """Prepare the study of ``spec`` and run it to its budget; return the study."""
    run = prepare_local_run(
        spec,
        storage,
        study_name=study_name,
        data_dir=data_dir,
        device=device,
        experiment=experiment,
    )
    run.optimize(callbacks)
    return run.study
