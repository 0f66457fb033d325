"""Write several user attributes of an Optuna trial in one transaction.

Optuna's storage API writes one attribute per transaction (a row lock, an upsert and a commit
each). A worker stores seven or eight attributes per finished trial, which on PostgreSQL was
the largest part of its per-trial overhead (``benchmarks/worker_overhead.py``). On an RDB
storage this module writes them all in one transaction through the storage's own
(private) per-attribute helper; on any other storage, or if that helper is not there in an
Optuna release, it falls back to the public one-by-one call.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage

logger = logging.getLogger(__name__)


def _rdb_backend(storage: BaseStorage) -> RDBStorage | None:
    # `study._storage` is Optuna's write-through cache around the RDB storage.
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, RDBStorage) else None


def set_trial_user_attrs(storage: BaseStorage, trial_id: int, attrs: Mapping[str, Any]) -> None:
    """Set every ``key: value`` of ``attrs`` on trial ``trial_id`` (JSON-serialisable values)."""
    if not attrs:
        return
    backend = _rdb_backend(storage)
    write_one = getattr(backend, "_set_trial_attr_without_commit", None)
    if backend is None or write_one is None:
        for key, value in attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)
        return
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(backend.scoped_session, True) as session:
        for key, value in attrs.items():
            write_one(session, models.TrialUserAttributeModel, trial_id, key, value)


def set_user_attrs(trial: optuna.Trial, attrs: Mapping[str, Any]) -> None:
    """`set_trial_user_attrs` for a live ``optuna.Trial`` (as returned by ``study.ask()``)."""
    set_trial_user_attrs(trial.storage, trial._trial_id, attrs)
    # Keep the trial's own view in step, as `Trial.set_user_attr` does.
    trial._cached_frozen_trial.user_attrs.update(attrs)
