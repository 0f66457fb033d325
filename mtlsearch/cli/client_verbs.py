"""`mtlsearch submit | status | best | cancel | resume`: the REST API from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from mtlsearch.cli._app import app, console, fail
from mtlsearch.cli._best_text import best_text, verdict_line
from mtlsearch.cli._study_table import format_value, studies_table, trials_done
from mtlsearch.client import Client, ClientError, load_spec_file

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="The server (default: $MTLSEARCH_API_URL, http://127.0.0.1:8000)."),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", help="Bearer token for mutating calls (default: $MTLSEARCH_API_TOKEN)."
    ),
]


def _client(url: str | None, token: str | None) -> Client:
    return Client(url=url, token=token)


def _fail(exc: ClientError) -> typer.Exit:
    return fail(escape(str(exc)))


@app.command("submit")
def submit(
    spec_file: Annotated[Path, typer.Argument(help="The study spec, YAML or JSON.")],
    url: UrlOption = None,
    token: TokenOption = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until the study finishes; print its best.")
    ] = False,
) -> None:
    """Submit a study; print its id and its dashboard URL."""
    try:
        spec = load_spec_file(spec_file)
        with _client(url, token) as client:
            study = client.submit(spec)
            console.print(study["id"], highlight=False)
            path = study.get("dashboard_url") or "/dashboard"
            console.print(f"dashboard: {client.url}{path}", highlight=False, soft_wrap=True)
            if not wait:
                return
            done = client.wait(study["id"])
            console.print(f"study {done['id']} {done['status']}", highlight=False)
            if done["status"] != "completed":
                raise fail(escape(done.get("message") or f"study {done['status']}"), code=1)
            console.print_json(json.dumps(client.best(study["id"])))
    except ClientError as exc:
        raise _fail(exc) from None


@app.command("status")
def status(
    study_id: Annotated[
        str | None, typer.Argument(help="A study id; without it, a table of studies.")
    ] = None,
    url: UrlOption = None,
) -> None:
    """A table of the studies, or one study's details."""
    try:
        with _client(url, None) as client:
            if study_id is None:
                _print_table(client.list(limit=100))
            else:
                _print_study(client.status(study_id), client.url)
    except ClientError as exc:
        raise _fail(exc) from None


def _print_table(studies: list[dict[str, Any]]) -> None:
    if not studies:
        console.print("no studies")
        return
    console.print(studies_table(studies, console))


def _print_study(study: dict[str, Any], base_url: str) -> None:
    trials = study.get("trials") or {}
    rows = [
        ("id", study["id"]),
        ("name", study["name"]),
        ("experiment", study["experiment"]),
        ("status", study["status"]),
        ("message", study.get("message")),
        ("trials done", trials_done(study)),
        ("running / waiting", f"{trials.get('running', 0)} / {trials.get('waiting', 0)}"),
        ("failed", trials.get("fail", 0)),
        ("progress", f"{100 * float(study.get('progress') or 0):.0f}%"),
        ("best value", study.get("best_value")),
        ("pareto front", study.get("pareto_size")),
        ("created", study.get("created_at")),
        ("finished", study.get("finished_at")),
        ("dashboard", f"{base_url}{study.get('dashboard_url') or '/dashboard'}"),
    ]
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, escape(format_value(value)))
    console.print(table)


@app.command("best")
def best(
    study_id: Annotated[str, typer.Argument(help="The study id.")],
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="json (default) or yaml: the record as /best returns it; text: "
            "for reading (means ± sd over the confirmation seeds, uniform weights, verdict).",
        ),
    ] = "json",
    url: UrlOption = None,
) -> None:
    """Print the study's answer: its best weights and strategy, confirmed at further seeds
    against uniform weights, with a verdict (json/yaml: exactly /best, for
    build_loss_from_best; the verdict also goes to stderr)."""
    if output_format not in ("json", "yaml", "text"):
        raise fail(f"--format must be json, yaml or text, got {output_format!r}")
    try:
        with _client(url, None) as client:
            record = client.best(study_id)
    except ClientError as exc:
        raise _fail(exc) from None
    if output_format == "text":
        typer.echo(best_text(record))
        return
    # Plain stdout, no rich markup or wrapping: the output is meant for `> best.json`.
    if output_format == "json":
        typer.echo(json.dumps(record, indent=2))
    else:
        typer.echo(yaml.safe_dump(record, sort_keys=False), nl=False)
    verdict = verdict_line(record)
    if verdict:
        typer.echo(f"verdict: {verdict}", err=True)


@app.command("cancel")
def cancel(
    study_id: Annotated[str, typer.Argument(help="The study id.")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Cancel a running study (its running trials stop after their current epoch)."""
    try:
        with _client(url, token) as client:
            study = client.cancel(study_id)
    except ClientError as exc:
        raise _fail(exc) from None
    console.print(f"study {study['id']} {study['status']}", highlight=False)


@app.command("resume")
def resume(
    study_id: Annotated[str, typer.Argument(help="The study id.")],
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Run a failed or cancelled study again, its budget as it was (trials that failed or were
    cancelled are run again; finished ones are kept)."""
    try:
        with _client(url, token) as client:
            study = client.resume(study_id)
    except ClientError as exc:
        raise _fail(exc) from None
    console.print(f"study {study['id']} {study['status']}", highlight=False)
