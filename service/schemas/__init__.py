"""Pydantic schemas of the REST API, one module per resource."""

from __future__ import annotations

from service.schemas.common import ErrorPublic, HealthPublic, ValidationErrorPublic
from service.schemas.experiments import ExperimentPublic, ExperimentsPublic, TaskPublic
from service.schemas.studies import (
    BestPublic,
    StudiesPublic,
    StudyCreate,
    StudyPublic,
    TrialCounts,
)
from service.schemas.trials import TrialPublic, TrialsPublic
from service.schemas.workers import WorkerPublic, WorkersPublic

__all__ = [
    "BestPublic",
    "ErrorPublic",
    "ExperimentPublic",
    "ExperimentsPublic",
    "HealthPublic",
    "StudiesPublic",
    "StudyCreate",
    "StudyPublic",
    "TaskPublic",
    "TrialCounts",
    "TrialPublic",
    "TrialsPublic",
    "ValidationErrorPublic",
    "WorkerPublic",
    "WorkersPublic",
]
