"""Write several user attributes of an Optuna trial in one transaction.

Optuna's storage API writes one attribute per transaction (a row read, an upsert and a commit
each). A worker stores seven or eight attributes per finished trial, which on PostgreSQL was
the largest part of its per-trial overhead (``benchmarks/worker_overhead.py``). On SQLite and
PostgreSQL this module checks the trial once and upserts all attributes in one statement, in
one transaction, on Optuna's own table (through Optuna's private ORM models, pinned by the
``optuna<6`` requirement); on any other storage it falls back to the public one-by-one call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, cast

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import TrialState
from sqlalchemy.dialects import postgresql, sqlite

logger = logging.getLogger(__name__)

# Both dialects' INSERT has ``on_conflict_do_update`` (an upsert).
_UPSERT_DIALECTS: dict[str, Callable[..., Any]] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
}


def _rdb_backend(storage: BaseStorage) -> RDBStorage | None:
    # `study._storage` is Optuna's write-through cache around the RDB storage.
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, RDBStorage) else None


def set_trial_user_attrs(storage: BaseStorage, trial_id: int, attrs: Mapping[str, Any]) -> None:
    """Set every ``key: value`` of ``attrs`` on trial ``trial_id`` (JSON-serialisable values).

    Raises `optuna.exceptions.UpdateFinishedTrialError` if the trial has finished, as
    ``set_trial_user_attr`` does.
    """
    if not attrs:
        return
    backend = _rdb_backend(storage)
    insert = _UPSERT_DIALECTS.get(backend.engine.name) if backend is not None else None
    if backend is None or insert is None:
        for key, value in attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)
        return
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    table = models.TrialUserAttributeModel
    rows = [
        {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
        for key, value in attrs.items()
    ]
    with _create_scoped_session(backend.scoped_session) as session:
        trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
        backend.check_trial_is_updatable(trial_id, cast(TrialState, trial.state))
        statement = insert(table).values(rows)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[table.trial_id, table.key],
                set_={"value_json": statement.excluded.value_json},
            )
        )


def set_user_attrs(trial: optuna.Trial, attrs: Mapping[str, Any]) -> None:
    """`set_trial_user_attrs` for a live ``optuna.Trial`` (as returned by ``study.ask()``)."""
    set_trial_user_attrs(trial.storage, trial._trial_id, attrs)
    # Keep the trial's own view in step, as `Trial.set_user_attr` does.
    trial._cached_frozen_trial.user_attrs.update(attrs)
