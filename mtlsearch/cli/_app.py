"""The typer application object and the options every verb shares."""

from __future__ import annotations

import logging

import typer
from rich.console import Console

from mtlsearch.settings import get_settings

app = typer.Typer(
    help="mtlsearch: search the loss weights and weighting strategy of a multi-task model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@app.callback()
def main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level."),
) -> None:
    level = logging.DEBUG if verbose else getattr(logging, get_settings().log_level)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One line per HTTP request is noise in a command's output; --verbose shows it.
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbose else logging.WARNING)
