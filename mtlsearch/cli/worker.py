"""`mtlsearch worker`: train the trials of running studies from the shared database."""

from __future__ import annotations

import enum
import logging
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import optuna
import typer
from rich.markup import escape

from mtlsearch.cli._app import app, fail
from mtlsearch.settings import get_settings
from storage.errors import StorageError

logger = logging.getLogger(__name__)


def parse_batch(value: str) -> int | str:
    """``1``, ``K`` (an integer >= 1) or ``auto``."""
    if value.strip().lower() == "auto":
        return "auto"
    try:
        k = int(value)
    except ValueError:
        raise typer.BadParameter(f"expected an integer >= 1 or 'auto', got {value!r}") from None
    if k < 1:
        raise typer.BadParameter(f"expected an integer >= 1 or 'auto', got {value!r}")
    return k


class TrainerKind(enum.StrEnum):
    """Where a worker trains (``--trainer``)."""

    PROCESS = "process"
    THREAD = "thread"


@app.command("worker")
def worker(
    db: Annotated[
        str | None,
        typer.Option("--db", help="Database URL (default: $MTLSEARCH_DB_URL)."),
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="Where to train: cpu, cuda, cuda:0, ...")
    ] = "cpu",
    batch: Annotated[
        str,
        typer.Option(
            "--batch",
            help="Trials trained together in one batched pass: 1 (one by one), K, or auto "
            "(as many as fit the device's memory).",
        ),
    ] = "1",
    max_trials: Annotated[
        int | None,
        typer.Option("--max-trials", min=1, help="Exit after starting this many trials."),
    ] = None,
    idle_exit: Annotated[
        float | None,
        typer.Option(
            "--idle-exit", min=0, help="Exit after this many seconds without work (default: wait)."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Data sets (default: $MTLSEARCH_DATA_DIR)."),
    ] = None,
    trainer: Annotated[
        TrainerKind,
        typer.Option(
            "--trainer",
            help="Where to train: process (a process of its own, which only trains: the "
            "asker's and teller's Python never holds it up; a killed training process has its "
            "trials run again) or thread (in this process, beside the asker and teller).",
        ),
    ] = TrainerKind.PROCESS,
    prefetch: Annotated[
        bool,
        typer.Option(
            "--prefetch/--no-prefetch",
            help="Accepted for compatibility; does nothing: the worker always asks a batch "
            "ahead on its own thread and tells on another.",
            hidden=True,
        ),
    ] = True,
) -> None:
    """Train the trials of the running studies until stopped.

    Start one per GPU, on any machine that reaches the database. Ctrl-C or SIGTERM: the
    current epoch finishes, the unfinished trial is given back, the worker exits 0.
    """
    from mtlsearch.worker import Worker, WorkerOptions
    from storage import get_database, migrate

    del prefetch  # a no-op kept so that existing command lines still start
    settings = get_settings()
    url = db if db is not None else settings.db_url
    try:
        k = parse_batch(batch)
        options = WorkerOptions(
            device=device,
            batch=k,
            max_trials=max_trials,
            idle_exit_s=idle_exit,
            data_dir=data_dir,
            trainer="process" if trainer is TrainerKind.PROCESS else "thread",
        )
    except (typer.BadParameter, ValueError) as exc:
        raise fail(f"--batch: {exc}" if isinstance(exc, typer.BadParameter) else str(exc)) from None
    if device != "cpu":
        from mtl_core.errors import ConfigError
        from mtl_core.trainer import resolve_device

        try:
            resolve_device(device)
        except ConfigError as exc:
            raise fail(escape(str(exc))) from None
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        # Workers may start before the server (or `db upgrade`) has created the schema.
        migrate.wait_for_schema(url, settings.schema_wait_s)
        database = get_database(url, settings.database_config())
        running = Worker(database, options, settings=settings)

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            logger.info("received %s", signal.Signals(signum).name)
            running.request_stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        running.run()
    except (ValueError, StorageError, optuna.exceptions.StorageInternalError) as exc:
        raise fail(escape(str(exc))) from None
