"""The `mtlsearch` command."""

from __future__ import annotations

import typer

app = typer.Typer(help="Search multi-task loss weights.")
