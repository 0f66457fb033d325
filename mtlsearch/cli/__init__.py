"""The `mtlsearch` command: one typer app, one module per group of verbs."""

from __future__ import annotations

from mtlsearch.cli._app import app

# Each module adds its verbs to `app` on import.
from mtlsearch.cli import train  # noqa: F401  (isort: skip)
from mtlsearch.cli import db  # noqa: F401  (isort: skip)
from mtlsearch.cli import run  # noqa: F401  (isort: skip)
from mtlsearch.cli import serve  # noqa: F401  (isort: skip)
from mtlsearch.cli import worker  # noqa: F401  (isort: skip)
from mtlsearch.cli import client_verbs  # noqa: F401  (isort: skip)
from mtlsearch.cli import up  # noqa: F401  (isort: skip)

__all__ = ["app"]
