"""A worker registers with what it can run: its device, its experiments (plugins included) and
its batch size."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mtl_core.experiments import EXPERIMENTS
from mtlsearch.settings import Settings
from mtlsearch.worker import Worker, WorkerOptions
from storage import Database, WorkerRepository
from tests.utils.databases import migrated_database

PLUGIN = "mtlsearch_test_plugin_worker"
PLUGIN_SOURCE = """
from mtl_core.experiments import EXPERIMENTS
from mtl_core.experiments.synthetic import Synthetic


class PluginCopy(Synthetic):
    name = "plugin_copy"


EXPERIMENTS.register("plugin_copy")(PluginCopy)
"""
SETTINGS = Settings(worker_heartbeat_s=1.0, stale_after_s=1.0, allowed_experiment_modules=[PLUGIN])


@pytest.fixture
def database(sqlite_url: str) -> Iterator[Database]:
    with migrated_database(sqlite_url, SETTINGS) as database:
        yield database


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An allowed plugin module on sys.path; the registry and sys.modules are restored."""
    monkeypatch.setattr(EXPERIMENTS, "_entries", dict(EXPERIMENTS._entries))
    (tmp_path / f"{PLUGIN}.py").write_text(PLUGIN_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop(PLUGIN, None)


@pytest.mark.parametrize("batch", [1, 3, "auto"])
@pytest.mark.usefixtures("plugin")
def test_the_worker_row_lists_its_experiments_and_batch(
    database: Database, batch: int | str, data_dir: Path
) -> None:
    options = WorkerOptions(
        batch=batch, idle_exit_s=0.0, heartbeat_s=1.0, worker_id="w", data_dir=data_dir
    )
    worker = Worker(database, options, settings=SETTINGS)
    worker.register()
    try:
        with database.session() as session:
            row = WorkerRepository(session).get("w", live_within_s=60)
    finally:
        worker.run()  # no studies: exits at once and stops the heartbeat
    # Everything this process's registry holds (other tests may have registered more), the
    # plugin that only the worker loaded included.
    assert row.experiments == tuple(EXPERIMENTS.names())
    assert {"adult", "multi_mnist", "plugin_copy", "synthetic"} <= set(row.experiments)
    assert (row.device, row.batch_size) == ("cpu", batch)
    assert row.unavailable == {}


def test_a_worker_without_an_experiments_data_does_not_offer_it(
    database: Database, tmp_path: Path
) -> None:
    empty = tmp_path / "no-data"
    empty.mkdir()
    options = WorkerOptions(idle_exit_s=0.0, heartbeat_s=1.0, worker_id="w", data_dir=empty)
    worker = Worker(database, options, settings=SETTINGS)
    worker.register()
    try:
        with database.session() as session:
            row = WorkerRepository(session).get("w", live_within_s=60)
    finally:
        worker.run()
    assert "synthetic" in row.experiments  # generated: no files
    for name in ("adult", "adult_mixed", "multi_mnist"):
        assert name not in row.experiments
        assert "missing data file" in row.unavailable[name] and str(empty) in row.unavailable[name]
