"""`python -m mtlsearch` is the `mtlsearch` command."""

from mtlsearch.cli import app

app(prog_name="mtlsearch")
