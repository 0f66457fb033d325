"""`mtlsearch experiments` and `mtlsearch train`: the training library from the shell (and
`train --from-trial`: `mtlsearch.cli.from_trial`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from mtl_core.errors import MTLError
from mtl_core.registry import UnknownNameError
from mtlsearch.cli._app import app, console, fail
from mtlsearch.cli.client_verbs import TokenOption, UrlOption
from mtlsearch.cli.from_trial import CONFIG_OPTIONS, retrain_from_trial
from mtlsearch.settings import get_settings

DATA_DIR_HELP = "Directory with the data sets (mnist/, uci-adult/); default: $MTLSEARCH_DATA_DIR."


def parse_key_values(items: list[str] | None, what: str) -> dict[str, Any]:
    """Parse ``key=value`` pairs; values are read as JSON when they parse (numbers, lists)."""
    parsed: dict[str, Any] = {}
    for item in items or []:
        for part in item.split(","):
            key, sep, raw = part.partition("=")
            if not sep or not key.strip():
                raise fail(f"{what} {part!r} is not of the form key=value")
            try:
                parsed[key.strip()] = json.loads(raw)
            except json.JSONDecodeError:
                parsed[key.strip()] = raw
    return parsed


def parse_weights(spec: str | None) -> dict[str, float]:
    """``uniform`` (all ones, the default) or ``task=w,task=w``."""
    if spec is None or spec == "uniform":
        return {}
    weights: dict[str, float] = {}
    for key, value in parse_key_values([spec], "weight").items():
        try:
            weights[key] = float(value)
        except (TypeError, ValueError):
            raise fail(f"weight of task {key!r} must be a number, got {value!r}") from None
    return weights


@app.command("experiments")
def experiments_command(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the experiments this installation can train, with their tasks."""
    from mtl_core.experiments import get_experiment, list_experiments, load_plugins

    load_plugins(get_settings().allowed_experiment_modules)
    rows: list[dict[str, Any]] = []
    for name in list_experiments():
        exp = get_experiment(name)
        rows.append(
            {
                "name": name,
                "description": exp.description,
                "tasks": [{"name": t.name, "loss": t.loss, "metric": t.metric} for t in exp.tasks],
            }
        )
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title="experiments")
    for col in ("name", "tasks (loss → metric)", "description"):
        table.add_column(col)
    for row in rows:
        tasks = "\n".join(f"{t['name']} ({t['loss']} → {t['metric']})" for t in row["tasks"])
        table.add_row(row["name"], tasks, row["description"])
    console.print(table)


@app.command("train")
def train_command(
    ctx: typer.Context,
    experiment: str = typer.Option(
        None, "--experiment", "-e", help="Experiment name (required without --from-trial)."
    ),
    strategy: str = typer.Option("fixed", help="Weighting strategy (see docs/strategies.md)."),
    param: list[str] = typer.Option(None, "--param", help="Strategy parameter key=value."),
    weights: str = typer.Option(
        None, help="Fixed task weights: 'uniform' (default, all 1) or task=w,task=w."
    ),
    schedule: str = typer.Option("joint", help="Training schedule."),
    schedule_param: list[str] = typer.Option(None, help="Schedule parameter key=value."),
    architecture: str = typer.Option(None, help="Architecture (default: the experiment's)."),
    arch_param: list[str] = typer.Option(None, help="Architecture parameter key=value."),
    optimizer: str = typer.Option(None, help="adam, adamw or sgd (default: the experiment's)."),
    lr: float = typer.Option(None, help="Learning rate."),
    epochs: int = typer.Option(None, help="Epochs (default: the experiment's)."),
    batch_size: int = typer.Option(None, help="Batch size."),
    grad_clip: float = typer.Option(None, help="Clip the gradient's global norm to this."),
    seed: int = typer.Option(0, help="Random seed (same seed, same device: same result)."),
    device: str = typer.Option(
        "cpu", help="cpu, cuda or cuda:N (with --from-trial: where to retrain; exact on cpu)."
    ),
    max_train_samples: int = typer.Option(None, help="Train on the first N samples only."),
    data_dir: Path = typer.Option(None, help=DATA_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    from_trial: str = typer.Option(
        None,
        "--from-trial",
        metavar="STUDY/NUMBER",
        help="Retrain this trial of a study alone, from its record on the server (config, "
        "seeds, K of its batched pass), and compare its metrics with the recorded ones; exit 1 "
        "if an exact reproduction was expected and they differ. Replaces the config options.",
    ),
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Train one trial and print per-task validation and test metrics.

    With --from-trial STUDY/NUMBER, retrain a study's trial instead and say whether its
    validation and test metrics are identical to the recorded ones: exact on the CPU with the
    worker's torch version and thread count, within float tolerance on a GPU; a trial recorded
    before the K of its batched pass was kept is reproducible only approximately.
    """
    if from_trial is not None:
        # Typer's own click fork has its own ParameterSource enum: compare by name.
        sources = {name: ctx.get_parameter_source(name) for name in CONFIG_OPTIONS}
        given = [name for name, source in sources.items() if source and source.name != "DEFAULT"]
        if given:
            names = ", ".join("--" + n.replace("_", "-") for n in given)
            raise fail(f"--from-trial retrains the recorded config; drop {names}")
        retrain_from_trial(
            from_trial, url=url, token=token, device=device, data_dir=data_dir, as_json=as_json
        )
        return
    if url is not None or token is not None:
        raise fail("--url and --token go with --from-trial (the server that has the trial)")
    if experiment is None:
        raise fail("give --experiment NAME (or --from-trial STUDY/NUMBER)")
    from pydantic import ValidationError

    from mtl_core.config import TrialConfig
    from mtl_core.experiments import load_plugins
    from mtl_core.trainer import train_trial

    settings = get_settings()
    load_plugins(settings.allowed_experiment_modules)
    try:
        config = TrialConfig(
            experiment=experiment,
            strategy=strategy,
            strategy_params=parse_key_values(param, "strategy parameter"),
            weights=parse_weights(weights),
            schedule=schedule,
            schedule_params=parse_key_values(schedule_param, "schedule parameter"),
            architecture=architecture,
            architecture_params=parse_key_values(arch_param, "architecture parameter"),
            optimizer=optimizer,
            lr=lr,
            epochs=epochs,
            batch_size=batch_size,
            grad_clip=grad_clip,
            seed=seed,
            device=device,
            max_train_samples=max_train_samples,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise fail(f"{field}: {err['msg']}, got {err.get('input')!r}") from None
    try:
        result = train_trial(config, data_dir or settings.data_dir, progress=not as_json)
    except (UnknownNameError, MTLError) as exc:
        raise fail(str(exc)) from None
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
        return
    table = Table(title=f"{experiment}: {result.epochs_run} epochs in {result.duration_s:.1f} s")
    table.add_column("task")
    table.add_column("weight (Σ=T)")
    table.add_column("val")
    table.add_column("test")
    exp_tasks = list(result.test_metrics)
    for task in exp_tasks:
        table.add_row(
            task,
            f"{result.final_weights.get(task, float('nan')):.3f}",
            f"{result.val_metrics[task]:.4f}",
            f"{result.test_metrics[task]:.4f}",
        )
    console.print(table)
    if result.stop_reason:
        console.print(f"stopped early: {result.stop_reason}")
