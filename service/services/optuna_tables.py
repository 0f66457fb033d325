"""Read-only SQL over Optuna's own tables (``studies``, ``trials``, ``trial_values``, ...).

Optuna's public API loads every trial of a study to count or page them; at 10,000 trials that
is far too slow per request. These queries use Optuna's ORM models (the schema Optuna migrates
itself) to count, page and aggregate in SQL, through our `Database` session on the same engine.
Only reads happen here; every write goes through Optuna's storage API.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from optuna.distributions import json_to_distribution
from optuna.storages._rdb import models as om
from optuna.study import StudyDirection
from optuna.trial import TrialState
from sqlalchemy import func, select
from sqlalchemy.orm import Session

#: Optuna trial states as the API names them.
STATE_NAMES: dict[TrialState, str] = {
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "fail",
}
STATES_BY_NAME: dict[str, TrialState] = {name: state for state, name in STATE_NAMES.items()}
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def as_utc(value: datetime | None) -> datetime | None:
    """Optuna stores naive UTC; give it its zone back."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def study_ids(session: Session, names: Iterable[str]) -> dict[str, int]:
    """Optuna study name → Optuna study id, for the names that exist."""
    wanted = list(set(names))
    if not wanted:
        return {}
    rows = session.execute(
        select(om.StudyModel.study_name, om.StudyModel.study_id).where(
            om.StudyModel.study_name.in_(wanted)
        )
    ).all()
    return {str(name): int(sid) for name, sid in rows}


def state_counts(session: Session, ids: Collection[int]) -> dict[int, dict[str, int]]:
    """Optuna study id → {state name: number of trials} (every state present, 0 if none)."""
    counts: dict[int, dict[str, int]] = {sid: dict.fromkeys(STATE_NAMES.values(), 0) for sid in ids}
    if not ids:
        return counts
    rows = session.execute(
        select(om.TrialModel.study_id, om.TrialModel.state, func.count())
        .where(om.TrialModel.study_id.in_(list(ids)))
        .group_by(om.TrialModel.study_id, om.TrialModel.state)
    ).all()
    for sid, state, n in rows:
        if sid is None:
            continue
        counts[int(sid)][STATE_NAMES[state]] = int(n)
    return counts


def directions(session: Session, ids: Collection[int]) -> dict[int, list[str]]:
    """Optuna study id → its directions in objective order ("maximize" / "minimize")."""
    result: dict[int, list[str]] = {sid: [] for sid in ids}
    if not ids:
        return result
    rows = session.execute(
        select(
            om.StudyDirectionModel.study_id,
            om.StudyDirectionModel.objective,
            om.StudyDirectionModel.direction,
        )
        .where(om.StudyDirectionModel.study_id.in_(list(ids)))
        .order_by(om.StudyDirectionModel.study_id, om.StudyDirectionModel.objective)
    ).all()
    for sid, _objective, direction in rows:
        result[int(sid)].append("maximize" if direction == StudyDirection.MAXIMIZE else "minimize")
    return result


def best_values(session: Session, dirs: dict[int, list[str]]) -> dict[int, float]:
    """Best finite value of each single-objective study that has a completed trial."""
    single = {sid: d[0] for sid, d in dirs.items() if len(d) == 1}
    if not single:
        return {}
    value = om.TrialValueModel.value
    rows = session.execute(
        select(om.TrialModel.study_id, func.min(value), func.max(value))
        .join(om.TrialValueModel, om.TrialValueModel.trial_id == om.TrialModel.trial_id)
        .where(
            om.TrialModel.study_id.in_(list(single)),
            om.TrialModel.state == TrialState.COMPLETE,
            om.TrialValueModel.objective == 0,
            om.TrialValueModel.value_type == om.TrialValueModel.TrialValueType.FINITE,
        )
        .group_by(om.TrialModel.study_id)
    ).all()
    result: dict[int, float] = {}
    for sid, low, high in rows:
        if sid is None:
            continue
        best = high if single[int(sid)] == "maximize" else low
        if best is not None:
            result[int(sid)] = float(best)
    return result


def completed_values(session: Session, study_id: int, n_objectives: int) -> list[list[float]]:
    """The value vectors of the study's completed trials (one query)."""
    rows = session.execute(
        select(
            om.TrialValueModel.trial_id,
            om.TrialValueModel.objective,
            om.TrialValueModel.value,
            om.TrialValueModel.value_type,
        )
        .join(om.TrialModel, om.TrialValueModel.trial_id == om.TrialModel.trial_id)
        .where(om.TrialModel.study_id == study_id, om.TrialModel.state == TrialState.COMPLETE)
    ).all()
    vectors: dict[int, list[float]] = {}
    for trial_id, objective, value, value_type in rows:
        vector = vectors.setdefault(int(trial_id), [float("nan")] * n_objectives)
        if 0 <= objective < n_objectives:
            vector[objective] = om.TrialValueModel.stored_repr_to_value(value, value_type)
    return list(vectors.values())


def pareto_size(values: Sequence[Sequence[float]], dirs: Sequence[str]) -> int:
    """How many of `values` are non-dominated (ties count each time, as Optuna's best_trials).

    Sorted sweep: a point can only be dominated by one before it in lexicographic order, and
    it is enough to compare it with the front found so far (O(n · front)).
    """
    signs = [1.0 if d == "maximize" else -1.0 for d in dirs]
    signed = [tuple(s * v for s, v in zip(signs, vector, strict=True)) for vector in values]
    points = sorted(set(signed), reverse=True)
    front: list[tuple[float, ...]] = []
    for point in points:
        if any(v != v for v in point):  # NaN: an incomplete vector is no candidate
            continue
        dominated = any(
            all(f >= p for f, p in zip(other, point, strict=True)) and other != point
            for other in front
        )
        if not dominated:
            front.append(point)
    on_front = set(front)
    return sum(1 for point in signed if point in on_front)


@dataclass(frozen=True, slots=True)
class TrialRow:
    """One trial of a page, as read from Optuna's tables."""

    number: int
    state: str
    values: list[float] | None
    params: dict[str, Any]
    user_attrs: dict[str, Any]
    datetime_start: datetime | None
    datetime_complete: datetime | None


def trial_page(
    session: Session,
    study_id: int,
    *,
    offset: int,
    limit: int,
    states: Sequence[TrialState] | None = None,
) -> tuple[list[TrialRow], int]:
    """One page of a study's trials by number, and how many match in all (5 queries)."""
    where = [om.TrialModel.study_id == study_id]
    if states:
        where.append(om.TrialModel.state.in_(list(states)))
    total = int(session.scalar(select(func.count()).select_from(om.TrialModel).where(*where)) or 0)
    rows = session.execute(
        select(
            om.TrialModel.trial_id,
            om.TrialModel.number,
            om.TrialModel.state,
            om.TrialModel._datetime_start_utc,
            om.TrialModel._datetime_complete_utc,
        )
        .where(*where)
        .order_by(om.TrialModel.number)
        .offset(offset)
        .limit(limit)
    ).all()
    ids = [int(r[0]) for r in rows]
    if not ids:
        return [], total
    values: dict[int, dict[int, float]] = {}
    for trial_id, objective, value, value_type in session.execute(
        select(
            om.TrialValueModel.trial_id,
            om.TrialValueModel.objective,
            om.TrialValueModel.value,
            om.TrialValueModel.value_type,
        ).where(om.TrialValueModel.trial_id.in_(ids))
    ):
        values.setdefault(int(trial_id), {})[int(objective)] = (
            om.TrialValueModel.stored_repr_to_value(value, value_type)
        )
    params: dict[int, dict[str, Any]] = {}
    for param_trial_id, name, value, dist in session.execute(
        select(
            om.TrialParamModel.trial_id,
            om.TrialParamModel.param_name,
            om.TrialParamModel.param_value,
            om.TrialParamModel.distribution_json,
        ).where(om.TrialParamModel.trial_id.in_(ids))
    ):
        params.setdefault(int(param_trial_id or 0), {})[str(name)] = json_to_distribution(
            dist
        ).to_external_repr(value)
    attrs: dict[int, dict[str, Any]] = {}
    for attr_trial_id, key, value_json in session.execute(
        select(
            om.TrialUserAttributeModel.trial_id,
            om.TrialUserAttributeModel.key,
            om.TrialUserAttributeModel.value_json,
        ).where(om.TrialUserAttributeModel.trial_id.in_(ids))
    ):
        attrs.setdefault(int(attr_trial_id or 0), {})[str(key)] = json.loads(value_json)
    page = []
    for trial_id, number, state, start, complete in rows:
        vals = values.get(int(trial_id))
        page.append(
            TrialRow(
                number=int(number),
                state=STATE_NAMES[state],
                values=[vals[k] for k in sorted(vals)] if vals else None,
                params=params.get(int(trial_id), {}),
                user_attrs=attrs.get(int(trial_id), {}),
                datetime_start=as_utc(start),
                datetime_complete=as_utc(complete),
            )
        )
    return page, total


def finished_durations(session: Session) -> list[tuple[str, float]]:
    """(state name, seconds) of every finished trial with both timestamps, all studies."""
    rows = session.execute(
        select(
            om.TrialModel.state,
            om.TrialModel._datetime_start_utc,
            om.TrialModel._datetime_complete_utc,
        ).where(
            om.TrialModel.state.in_(FINISHED_STATES),
            om.TrialModel._datetime_start_utc.is_not(None),
            om.TrialModel._datetime_complete_utc.is_not(None),
        )
    ).all()
    return [
        (STATE_NAMES[state], max(0.0, (complete - start).total_seconds()))
        for state, start, complete in rows
        if start is not None and complete is not None
    ]


def waiting_counts(session: Session, ids: Collection[int]) -> dict[int, int]:
    """Optuna study id → number of WAITING trials (queued, e.g. retries)."""
    if not ids:
        return {}
    rows = session.execute(
        select(om.TrialModel.study_id, func.count())
        .where(om.TrialModel.study_id.in_(list(ids)), om.TrialModel.state == TrialState.WAITING)
        .group_by(om.TrialModel.study_id)
    ).all()
    return {int(sid): int(n) for sid, n in rows if sid is not None}


__all__ = [
    "FINISHED_STATES",
    "STATES_BY_NAME",
    "STATE_NAMES",
    "TrialRow",
    "as_utc",
    "best_values",
    "completed_values",
    "directions",
    "finished_durations",
    "pareto_size",
    "state_counts",
    "study_ids",
    "trial_page",
    "waiting_counts",
]
