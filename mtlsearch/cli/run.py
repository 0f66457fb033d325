"""`mtlsearch run`: search on this machine, without the service (Optuna over a SQLite file)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import optuna
import typer
from optuna.trial import FrozenTrial, TrialState
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mtl_core.errors import ConfigError, DataError, UnknownNameError
from mtlsearch.cli._app import app, console, fail
from mtlsearch.client import ClientError, load_spec_file
from mtlsearch.search.best import best_trials, summarise_trial
from mtlsearch.search.local import prepare_local_run
from mtlsearch.search.spec import SpecError, StudySpec, describe_validation_error
from mtlsearch.settings import DEFAULT_DB_URL, get_settings

logger = logging.getLogger(__name__)

DEFAULT_TRIALS = 20


def _load_spec_file(path: Path) -> dict[str, Any]:
    try:
        return load_spec_file(path)
    except ClientError as exc:
        raise fail(exc.message) from None


def build_spec(
    spec_file: Path | None,
    *,
    experiment: str | None,
    trials: int | None,
    epochs: int | None,
    strategies: str | None,
    study_name: str | None,
    max_train_samples: int | None,
    sampler: str | None,
    pruner: str | None,
    objective: str | None,
    seed: int | None,
    time_budget_s: float | None,
) -> StudySpec:
    """The spec of a local run: the file's fields (if any), overridden by the flags."""
    data: dict[str, Any] = _load_spec_file(spec_file) if spec_file is not None else {}
    source = f"spec file {spec_file}: " if spec_file is not None else ""
    space: dict[str, Any] = dict(data.get("search_space") or {})
    if experiment is not None:
        data["experiment"] = experiment
    if "experiment" not in data:
        raise fail("give --experiment or a --spec file that names one")
    if study_name is not None:
        data["name"] = study_name
    data.setdefault("name", f"{data['experiment']}-local")
    if trials is not None:
        data["n_trials"] = trials
    if time_budget_s is not None:
        data["time_budget_s"] = time_budget_s
    if data.get("n_trials") is None and data.get("time_budget_s") is None:
        data["n_trials"] = DEFAULT_TRIALS
    if epochs is not None:
        space["epochs"] = epochs
    if max_train_samples is not None:
        space["max_train_samples"] = max_train_samples
    if strategies is not None:
        names = [s.strip() for s in strategies.split(",") if s.strip()]
        space["strategies"] = [{"name": name} for name in names]
    if space:
        data["search_space"] = space
    for key, value in (("sampler", sampler), ("pruner", pruner), ("seed", seed)):
        if value is not None:
            data[key] = value
    if objective is not None:
        data["objective"] = {**(data.get("objective") or {}), "kind": objective}
    try:
        return StudySpec.model_validate(data)
    except ValidationError as exc:
        raise fail(f"{source}{describe_validation_error(exc)}") from None


def _format_values(values: list[float] | None) -> str:
    return ", ".join(f"{v:.4g}" for v in values or []) or "-"


def _print_best(run_study: optuna.Study, spec: StudySpec, experiment: Any) -> None:
    trials = best_trials(run_study)
    states = [t.state for t in run_study.get_trials(deepcopy=False)]
    console.print(
        f"study [bold]{run_study.study_name}[/]: {states.count(TrialState.COMPLETE)} complete, "
        f"{states.count(TrialState.PRUNED)} pruned, {states.count(TrialState.FAIL)} failed"
    )
    if not trials:
        console.print("no trial has completed yet")
        return
    if len(trials) > 1:
        console.print(f"Pareto front: {len(trials)} trials")
    metric_of = {task.name: task.metric for task in experiment.tasks}
    for trial in trials[:10]:
        summary = summarise_trial(trial, spec, experiment)
        params = ", ".join(f"{k}={v}" for k, v in summary.strategy_params.items()) or "defaults"
        table = Table(
            title=f"trial {summary.number}: objective {_format_values(summary.values)}; "
            f"strategy {summary.strategy} ({params})",
            title_justify="left",
        )
        for column in ("task", "weight", "normalised", "metric", "val", "test"):
            table.add_column(column, justify="left" if column in ("task", "metric") else "right")
        for task in experiment.task_names:
            table.add_row(
                task,
                f"{summary.weights[task]:.4g}",
                f"{summary.weights_normalised[task]:.4g}",
                metric_of[task],
                _metric(summary.val_metrics, task),
                _metric(summary.test_metrics, task),
            )
        console.print(table)


def _metric(metrics: dict[str, float], task: str) -> str:
    return f"{metrics[task]:.4f}" if task in metrics else "-"


@app.command("run")
def run(
    experiment: Annotated[
        str | None, typer.Option("--experiment", "-e", help="Experiment to search, e.g. adult.")
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option(
            "--trials", "-n", min=1, help=f"Trials of the study (default {DEFAULT_TRIALS})."
        ),
    ] = None,
    spec_file: Annotated[
        Path | None, typer.Option("--spec", help="A study spec in YAML (see docs/study-spec.md).")
    ] = None,
    db: Annotated[str, typer.Option("--db", help="Optuna storage URL.")] = DEFAULT_DB_URL,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Data sets (default: MTLSEARCH_DATA_DIR).")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, ...")] = "cpu",
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Epochs per trial.")] = None,
    strategies: Annotated[
        str | None,
        typer.Option(
            "--strategies", help="Comma-separated strategies to choose among, e.g. fixed,dwa."
        ),
    ] = None,
    study_name: Annotated[
        str | None, typer.Option("--study-name", help="Study name (default: <experiment>-local).")
    ] = None,
    max_train_samples: Annotated[
        int | None, typer.Option("--max-train-samples", min=1, help="Train on the first N samples.")
    ] = None,
    sampler: Annotated[
        str | None, typer.Option("--sampler", help="tpe, gp, random, grid or nsga2.")
    ] = None,
    pruner: Annotated[
        str | None, typer.Option("--pruner", help="median, hyperband or none.")
    ] = None,
    objective: Annotated[
        str | None, typer.Option("--objective", help="delta_m, weighted_mean or multi.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Sampler and training seed.")] = None,
    time_budget: Annotated[
        float | None, typer.Option("--time-budget", help="Stop starting trials after N seconds.")
    ] = None,
) -> None:
    """Search weights and strategies on this machine; print the best trial."""
    spec = build_spec(
        spec_file,
        experiment=experiment,
        trials=trials,
        epochs=epochs,
        strategies=strategies,
        study_name=study_name,
        max_train_samples=max_train_samples,
        sampler=sampler,
        pruner=pruner,
        objective=objective,
        seed=seed,
        time_budget_s=time_budget,
    )
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = data_dir if data_dir is not None else get_settings().data_dir
    try:
        local = prepare_local_run(spec, db, data_dir=data, device=device)
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[best]}"),
            console=console,
            transient=False,
        ) as progress:
            bar = progress.add_task(spec.name, total=local.remaining, best="")

            def advance(study: optuna.Study, trial: FrozenTrial) -> None:
                best = best_trials(study)
                text = f"best {_format_values(best[0].values)}" if len(best) == 1 else ""
                if len(best) > 1:
                    text = f"Pareto front: {len(best)}"
                progress.update(bar, advance=1, best=text)

            local.optimize(callbacks=[advance])
    except (SpecError, UnknownNameError, ConfigError, DataError) as exc:
        raise fail(str(exc)) from None
    _print_best(local.study, spec, local.experiment)
