"""`mtlsearch status` (the table of studies) against the real API server, on an 80-column
console and a wide one: nothing that matters is cropped."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from optuna.trial import TrialState
from rich.console import Console
from typer.testing import CliRunner

from mtlsearch.cli import app, client_verbs
from mtlsearch.client import Client
from mtlsearch.search.spec import StudySpec
from storage import close_database, get_database
from tests.utils.server import start_server
from tests.utils.trials import add_finished_trials

pytestmark = pytest.mark.slow

#: Study names as people write them; the longest is the spec's maximum, 64 characters.
NAMES = ("census-income-weights-tpe", "multi-mnist-dwa-vs-fixed", "x")
LONG_NAME = "adult-mixed-income-hours-weights-and-strategy-search-tpe-k32-v03"


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[Any]]]:
    """A server with four studies, one of them with finished trials (so a best value)."""
    db_url = f"sqlite:///{tmp_path_factory.mktemp('status') / 'status.db'}"
    assert len(LONG_NAME) == 64
    try:
        with start_server(db_url) as url, Client(url) as client:
            for name in (*NAMES, LONG_NAME):
                client.submit({"name": name, "experiment": "synthetic", "n_trials": 200})
            first = client.list(limit=10)[-1]  # newest first
            add_finished_trials(
                get_database(db_url),
                first["optuna_study_name"],
                StudySpec.model_validate(first["spec"]),
                6,
                states=(TrialState.COMPLETE, TrialState.FAIL),
            )
            yield url, client.list(limit=10)
    finally:
        close_database(db_url)


def status_output(monkeypatch: pytest.MonkeyPatch, url: str, width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    monkeypatch.setattr(client_verbs, "console", console)
    result = CliRunner().invoke(app, ["status", "--url", url])
    assert result.exit_code == 0, result.output
    return console.export_text()


def fields(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def row(lines: list[str], study_id: str) -> tuple[list[str], list[str]]:
    """The fields of the study's line, and what its name column wraps onto the next lines."""
    (index,) = [i for i, line in enumerate(lines) if line.startswith(study_id)]
    continued = []
    for line in lines[index + 1 :]:
        if not line.startswith(" ") or not line.strip():
            break
        continued.append(line.strip())
    return fields(lines[index]), continued


def test_status_at_80_columns_keeps_ids_names_and_best_values_whole(
    monkeypatch: pytest.MonkeyPatch, studies: tuple[str, list[Any]]
) -> None:
    url, listed = studies
    text = status_output(monkeypatch, url, 80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    assert "…" not in text
    # The least needed columns make room; one long name wraps rather than hide `failed`.
    assert fields(lines[0]) == ["id", "name", "status", "trials", "failed", "best"]
    assert "hidden at 80 columns: running, experiment (see mtlsearch status ID)" in text
    for study in listed:
        cells, continued = row(lines, study["id"])
        assert cells[0] == study["id"]
        assert cells[1] + "".join(continued) == study["name"]  # wrapped, never cropped
        assert cells[2] == study["status"]
        assert cells[3].endswith("/200")
        assert cells[4] == str(study["trials"]["fail"])
        best = study["best_value"]
        assert cells[-1] == ("-" if best is None else f"{best:.4g}")
    assert sum(study["best_value"] is not None for study in listed) == 1
    assert sum(study["trials"]["fail"] for study in listed) == 3
    # The names people write fit on their line.
    for name in NAMES:
        assert any(fields(line)[1:2] == [name] for line in lines)


def test_status_on_a_wide_console_shows_every_column(
    monkeypatch: pytest.MonkeyPatch, studies: tuple[str, list[Any]]
) -> None:
    url, listed = studies
    text = status_output(monkeypatch, url, 200)
    lines = text.splitlines()
    assert fields(lines[0]) == [
        "id",
        "name",
        "experiment",
        "status",
        "trials",
        "running",
        "failed",
        "best",
    ]
    assert "hidden" not in text and "…" not in text
    with_trials = next(s for s in listed if s["best_value"] is not None)
    for study in listed:
        cells, continued = row(lines, study["id"])
        assert continued == []
        assert cells[:4] == [study["id"], study["name"], "synthetic", study["status"]]
        assert cells[5:7] == ["0", "3" if study is with_trials else "0"]
    assert row(lines, with_trials["id"])[0][-1] == f"{with_trials['best_value']:.4g}"
