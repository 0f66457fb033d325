"""Repositories: plain classes over a `Session`, one per resource.

They never commit (the caller's `Database.session()` does) and never return ORM objects: each
returns frozen dataclasses of its own.
"""

from __future__ import annotations

from storage.repositories.artifacts import ArtifactInfo, ArtifactRepository
from storage.repositories.baselines import BaselineInfo, BaselineRepository
from storage.repositories.studies import StudyInfo, StudyRepository
from storage.repositories.trials import LostTrial, Reservation, TrialRepository, TrialRow
from storage.repositories.workers import WorkerInfo, WorkerRepository

__all__ = [
    "ArtifactInfo",
    "ArtifactRepository",
    "BaselineInfo",
    "BaselineRepository",
    "LostTrial",
    "Reservation",
    "StudyInfo",
    "StudyRepository",
    "TrialRepository",
    "TrialRow",
    "WorkerInfo",
    "WorkerRepository",
]
