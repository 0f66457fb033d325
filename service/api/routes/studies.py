"""Routes of ``/api/v1/studies``: parse the request, call `service.services.studies`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status

from service.api.deps import DatabaseDep, OrphansDep, SettingsDep, TokenDep
from service.schemas.common import ERROR_RESPONSES, MUTATION_RESPONSES, ErrorPublic
from service.schemas.studies import (
    BestPublic,
    StudiesPublic,
    StudyCreate,
    StudyPublic,
    StudyStatusName,
)
from service.schemas.trials import TrialPublic, TrialsPublic, TrialStateName
from service.services import answer
from service.services import studies as service
from storage import StudyStatus

router = APIRouter(prefix="/studies", tags=["studies"])

StudyId = Annotated[
    str, Path(min_length=1, max_length=64, description="The study's id (from POST or GET).")
]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1, description="Rows to skip (0..2**31-1).")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size (1..1000).")]
TrialNumber = Annotated[
    int, Path(ge=0, le=2**31 - 1, description="The trial's number in its study (0-based).")
]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=StudyPublic,
    dependencies=[TokenDep],
    summary="Create a study",
    responses={
        **MUTATION_RESPONSES,
        409: {"model": ErrorPublic, "description": "A study of that name exists."},
        422: {
            "description": "The spec is invalid: malformed JSON, a bad field, an unknown "
            "experiment / task / strategy, an impossible search space. The message names the "
            "field and the valid choices. Nothing is written."
        },
    },
)
def create_study(spec: StudyCreate, database: DatabaseDep, orphans: OrphansDep) -> StudyPublic:
    """Validate the study spec against its experiment, create its Optuna study and record.

    The body is the study spec (docs/study-spec.md). The experiment is a registered name only:
    a request can never make the server or a worker import code. Workers start on the study
    at once.
    """
    return service.create_study(database, spec, orphans)


@router.get("", response_model=StudiesPublic, summary="List studies", responses=ERROR_RESPONSES)
def list_studies(
    database: DatabaseDep,
    settings: SettingsDep,
    offset: Offset = 0,
    limit: Limit = 50,
    status: Annotated[StudyStatusName | None, Query(description="Only this status.")] = None,
) -> StudiesPublic:
    """One page of studies, newest first, with the total count."""
    return service.list_studies(
        database,
        offset=offset,
        limit=limit,
        status=StudyStatus(status) if status is not None else None,
        stale_after_s=settings.stale_after_s,
    )


@router.get(
    "/{study_id}", response_model=StudyPublic, summary="Get a study", responses=ERROR_RESPONSES
)
def get_study(study_id: StudyId, database: DatabaseDep, settings: SettingsDep) -> StudyPublic:
    """A study: status, trial counts by state, best value or Pareto size, progress, spec.

    A running study whose experiment no live worker has says so in its ``message``.
    """
    return service.get_study(database, study_id, settings.stale_after_s)


@router.post(
    "/{study_id}/cancel",
    response_model=StudyPublic,
    dependencies=[TokenDep],
    summary="Cancel a study",
    responses={
        **MUTATION_RESPONSES,
        409: {"model": ErrorPublic, "description": "The study is not running any more."},
    },
)
def cancel_study(study_id: StudyId, database: DatabaseDep) -> StudyPublic:
    """Mark a running study cancelled: workers take none of its trials any more and stop its
    running trials at their next epoch. A finished study answers 409."""
    return service.cancel_study(database, study_id)


@router.post(
    "/{study_id}/resume",
    response_model=StudyPublic,
    dependencies=[TokenDep],
    summary="Resume a failed or cancelled study",
    responses={
        **MUTATION_RESPONSES,
        409: {"model": ErrorPublic, "description": "The study is running or completed."},
    },
)
def resume_study(study_id: StudyId, database: DatabaseDep) -> StudyPublic:
    """Run a failed or cancelled study again with its budget as it was: the trials that failed
    or were cancelled gave their slots back, so workers run as many as are missing; complete
    trials are kept. A running or completed study answers 409."""
    return service.resume_study(database, study_id)


@router.delete(
    "/{study_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    response_model=None,
    dependencies=[TokenDep],
    summary="Delete a study",
    responses=MUTATION_RESPONSES,
)
def delete_study(study_id: StudyId, database: DatabaseDep) -> Response:
    """Delete the study's record, its artifacts and its Optuna study (trials included)."""
    service.delete_study(database, study_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{study_id}/trials",
    response_model=TrialsPublic,
    summary="List a study's trials",
    responses=ERROR_RESPONSES,
)
def list_trials(
    study_id: StudyId,
    database: DatabaseDep,
    offset: Offset = 0,
    limit: Limit = 100,
    state: Annotated[
        list[TrialStateName] | None,
        Query(description="Only trials in these states (repeat the parameter for several)."),
    ] = None,
) -> TrialsPublic:
    """One page of trials by number: state, values, params, what the worker recorded (config,
    val_metrics, test_metrics, weights_normalised, the strategy's effective weights and their
    trajectory, epochs_run, seed, num_slots, fail_reason), times."""
    return service.list_trials(database, study_id, offset=offset, limit=limit, states=state)


@router.get(
    "/{study_id}/trials/{number}",
    response_model=TrialPublic,
    summary="Get one trial of a study",
    responses={
        404: {"model": ErrorPublic, "description": "No such study, or no trial of that number."},
        503: ERROR_RESPONSES[503],
    },
)
def get_trial(study_id: StudyId, number: TrialNumber, database: DatabaseDep) -> TrialPublic:
    """One trial, as in the list: its record holds what determines its run (``config`` with
    ``seed`` and ``data_seed``, ``num_slots``), so ``mtlsearch train --from-trial ID/NUMBER``
    retrains it exactly, and the weights its strategy applied."""
    return service.get_trial(database, study_id, number)


@router.get(
    "/{study_id}/best",
    response_model=BestPublic,
    response_model_exclude_unset=True,
    summary="Best weights and config of a study",
    responses={
        404: {
            "model": ErrorPublic,
            "description": "No such study, or no trial has completed yet.",
        },
        503: ERROR_RESPONSES[503],
    },
)
def get_best(study_id: StudyId, database: DatabaseDep) -> dict[str, Any]:
    """The best trial's weights (raw and normalised), strategy and parameters, full config,
    metrics and Δm%; for several objectives the Pareto set under ``pareto``. Feed it to
    `mtl_core.build_loss_from_best`."""
    return answer.get_best(database, study_id)


__all__ = ["router"]
