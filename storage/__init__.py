"""storage: mtlsearch's SQL tables, sessions and migrations, beside Optuna's RDB storage.

Typical use in a process (API server, worker)::

    from storage import StudyRepository, get_database

    db = get_database(url, config)      # one per process and URL; config: DatabaseConfig
    with db.session() as session:       # commits, or rolls back and raises StorageError
        study = StudyRepository(session).create(name="n", experiment="e", spec={...})
    optuna.load_study(study_name=study.optuna_study_name, storage=db.optuna_storage())

Create or upgrade the schema first: ``mtlsearch db upgrade`` or `storage.migrate.upgrade`.
"""

from __future__ import annotations

from storage.database import (
    Database,
    DatabaseConfig,
    close_database,
    get_database,
    parse_db_url,
)
from storage.errors import (
    DatabaseUnavailableError,
    NotFoundError,
    StorageError,
    StudyExistsError,
)
from storage.models import StudyStatus, TrialState, WorkerStatus
from storage.repositories import (
    ArtifactInfo,
    ArtifactRepository,
    BaselineInfo,
    BaselineRepository,
    StudyInfo,
    StudyRepository,
    TrialRepository,
    TrialRow,
    WorkerInfo,
    WorkerRepository,
)

__all__ = [
    "ArtifactInfo",
    "ArtifactRepository",
    "BaselineInfo",
    "BaselineRepository",
    "Database",
    "DatabaseConfig",
    "DatabaseUnavailableError",
    "NotFoundError",
    "StorageError",
    "StudyExistsError",
    "StudyInfo",
    "StudyRepository",
    "StudyStatus",
    "TrialRepository",
    "TrialRow",
    "TrialState",
    "WorkerInfo",
    "WorkerRepository",
    "WorkerStatus",
    "close_database",
    "get_database",
    "parse_db_url",
]
