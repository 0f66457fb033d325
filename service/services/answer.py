"""The study's answer (``GET /best``): the stored ``best`` artifact of a completed study, else
read from its rows as they are (`mtlsearch.search.answer.best_answer`)."""

from __future__ import annotations

from typing import Any

import optuna

from mtl_core.experiments import Experiment, get_experiment
from mtl_core.registry import UnknownNameError
from mtlsearch.search.answer import best_answer
from mtlsearch.search.objective import directions
from mtlsearch.search.spec import StudySpec
from service.errors import ConflictError
from storage import (
    ArtifactRepository,
    Database,
    NotFoundError,
    StudyInfo,
    StudyRepository,
    TrialRepository,
    TrialRow,
)
from storage.repositories.trials import BEST_ARTIFACT


def get_best(database: Database, study_id: str) -> dict[str, Any]:
    """The best record of a study (`mtlsearch.search.best.best_record`).

    The ``best`` artifact a worker stored when the study completed is served as is; otherwise
    the record is computed from the trials so far.

    Raises:
        NotFoundError: no such study, or no trial has completed yet.
        ConflictError: the study's experiment is not registered on this server.
    """
    with database.session() as session:
        info = StudyRepository(session).get(study_id)
        artifact = ArtifactRepository(session).get(study_id, BEST_ARTIFACT)
        if artifact is not None:
            return artifact.payload
        spec = StudySpec.model_validate(info.spec)
        try:
            experiment = get_experiment(spec.experiment)
        except UnknownNameError as exc:
            raise ConflictError(
                f"study {study_id!r} uses experiment {spec.experiment!r}, which this server "
                f"does not know ({exc})"
            ) from None
        rows = _best_candidates(TrialRepository(session), study_id, spec, experiment)
    record = best_answer(rows, spec, experiment, _baselines(database, info))
    if record is None:
        raise NotFoundError(
            f"study {study_id!r} has no completed trial yet; /best answers once one has"
        )
    return record


def _best_candidates(
    trials: TrialRepository, study_id: str, spec: StudySpec, experiment: Experiment
) -> list[TrialRow]:
    """The rows the answer is read from: the search's best by SQL for one objective (every
    complete row for a Pareto front), and the confirmation runs with the rows of what they
    confirm."""
    study_directions = directions(spec, experiment)
    confirmation = trials.confirmation_rows(study_id)
    if len(study_directions) > 1:
        searched = [r for r in trials.rows(study_id, ["complete"]) if r.kind == "search"]
        return searched + [r for r in confirmation if r.kind == "confirmation"]
    best = trials.best_row(study_id, study_directions[0])
    return ([] if best is None else [best]) + confirmation


def _baselines(database: Database, info: StudyInfo) -> dict[str, float] | None:
    """The study's single-task baselines, a user attribute of its Optuna study (public API)."""
    try:
        study = optuna.load_study(
            study_name=info.optuna_study_name,
            storage=database.optuna_storage(),
            sampler=optuna.samplers.RandomSampler(),
        )
    except KeyError:
        raise NotFoundError(
            f"study {info.id!r} has no Optuna study {info.optuna_study_name!r} in the database"
        ) from None
    except optuna.exceptions.OptunaError as exc:
        raise database.storage_error(exc, f"loading study {info.id!r}") from exc
    baselines = study.user_attrs.get("baselines")
    return dict(baselines) if baselines is not None else None


__all__ = ["get_best"]
