"""Reads of ``mtl_trials`` for the REST and the metrics: counts, best values, pages (all SQL).

`TrialReads` is the read half of `storage.repositories.trials.TrialRepository`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.models import FailureKind, TrialKind, TrialRecord, TrialState, params_key

#: Trial states as the API names them ('reserved' rows count as 'running', 'queued' retries
#: as 'waiting').
API_STATES = ("running", "waiting", "complete", "pruned", "fail")

#: Rows a worker holds: it will finish them (or, if it dies, a peer claims them).
ACTIVE = (TrialState.RESERVED.value, TrialState.RUNNING.value)
#: Rows that still hold a budget slot and will run: a study with any is not done.
UNFINISHED = (TrialState.QUEUED.value, *ACTIVE)
FINISHED = (TrialState.COMPLETE.value, TrialState.PRUNED.value, TrialState.FAIL.value)
#: Rows whose configuration a new trial must not re-run at their seed (a failed one taught
#: nothing; a reserved one has no params yet).
_REPEATABLE = (TrialState.RUNNING.value, TrialState.COMPLETE.value, TrialState.PRUNED.value)


@dataclass(frozen=True, slots=True)
class TrialRow:
    """One row of ``mtl_trials`` (a snapshot).

    ``population`` is a population member's trajectory of fixed weights, lineage and planned
    epochs (`mtl_core.results.TrialResult.population`), None for any other trial.
    """

    id: int
    study_id: str
    number: int | None
    optuna_trial_id: int | None
    state: TrialState
    kind: TrialKind
    confirms: str | None
    worker_id: str | None
    params: dict[str, Any] | None
    config: dict[str, Any] | None
    weights_normalised: dict[str, Any] | None
    values: list[float] | None
    value: float | None
    val_metrics: dict[str, Any] | None
    test_metrics: dict[str, Any] | None
    strategy_weights: dict[str, Any] | None
    weights_trajectory: list[Any] | None
    epochs_run: int | None
    seed: int | None
    num_slots: int | None
    reason: str | None
    failure_kind: FailureKind | None
    retry_of: int | None
    reserved_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    population: dict[str, Any] | None = None

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to finish, None unless both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return max(0.0, (self.finished_at - self.started_at).total_seconds())


_COLUMNS = [getattr(TrialRecord, f.name) for f in fields(TrialRow)]


def _row(values: Sequence[Any]) -> TrialRow:
    data = dict(zip((f.name for f in fields(TrialRow)), values, strict=True))
    data["state"] = TrialState(data["state"])
    data["kind"] = TrialKind(data["kind"])
    data["failure_kind"] = FailureKind(data["failure_kind"]) if data["failure_kind"] else None
    return TrialRow(**data)


def _api_states(states: Collection[str] | None) -> list[str] | None:
    """Our states for API state names ('running' includes 'reserved', 'waiting' is 'queued')."""
    if not states:
        return None
    result: list[str] = []
    for name in states:
        if name not in API_STATES and name not in TrialState.__members__.values():
            raise ValueError(f"trial state must be one of {', '.join(API_STATES)}, got {name!r}")
        if name == "running":
            result.extend(ACTIVE)
        elif name == "waiting":
            result.append(TrialState.QUEUED.value)
        else:
            result.append(name)
    return result


class TrialReads:
    """The reads of ``mtl_trials`` inside the caller's session."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def state_counts(self, study_ids: Collection[str]) -> dict[str, dict[str, int]]:
        """Study id -> {API state name: search trials} for `study_ids` (every name present, 0
        if none), and ``cancelled``: failed trials that a cancel ended (kind ``cancelled``).

        'reserved' rows count as running; 'waiting' are the queued retries of lost trials.
        Confirmation runs are counted apart (`confirmation_counts`).
        """
        counts = {sid: dict.fromkeys((*API_STATES, "cancelled"), 0) for sid in study_ids}
        if not counts:
            return counts
        names = {TrialState.RESERVED.value: "running", TrialState.QUEUED.value: "waiting"}
        cancelled = FailureKind.CANCELLED.value
        for sid, state, kind, n in self._session.execute(
            select(TrialRecord.study_id, TrialRecord.state, TrialRecord.failure_kind, func.count())
            .where(
                TrialRecord.study_id.in_(list(counts)),
                TrialRecord.kind == TrialKind.SEARCH.value,
            )
            .group_by(TrialRecord.study_id, TrialRecord.state, TrialRecord.failure_kind)
        ):
            name = names.get(state, str(state))
            if state == TrialState.FAIL.value and kind == cancelled:
                name = "cancelled"
            counts[sid][name] += int(n)
        return counts

    def confirmation_counts(self, study_ids: Collection[str]) -> dict[str, dict[str, int]]:
        """Study id -> {queued, running, complete, fail: confirmation runs} for the studies of
        `study_ids` that have any."""
        counts: dict[str, dict[str, int]] = {}
        names = {TrialState.RESERVED.value: "running", TrialState.PRUNED.value: "complete"}
        for sid, state, n in self._session.execute(
            select(TrialRecord.study_id, TrialRecord.state, func.count())
            .where(
                TrialRecord.study_id.in_(list(study_ids)),
                TrialRecord.kind == TrialKind.CONFIRMATION.value,
            )
            .group_by(TrialRecord.study_id, TrialRecord.state)
        ):
            study = counts.setdefault(
                sid, dict.fromkeys(("queued", "running", "complete", "fail"), 0)
            )
            study[names.get(state, str(state))] += int(n)
        return counts

    def confirmation_rows(self, study_id: str) -> list[TrialRow]:
        """The study's confirmation runs, with the complete search rows of the configurations
        they confirm (what `mtlsearch.search.answer` reads besides the search's best)."""
        runs = [
            _row(r)
            for r in self._session.execute(
                select(*_COLUMNS)
                .where(
                    TrialRecord.study_id == study_id,
                    TrialRecord.kind == TrialKind.CONFIRMATION.value,
                )
                .order_by(TrialRecord.id)
            ).all()
        ]
        keys = {r.confirms for r in runs if r.confirms}
        if not keys:
            return runs
        sources = self._session.execute(
            select(*_COLUMNS)
            .where(
                TrialRecord.study_id == study_id,
                TrialRecord.kind == TrialKind.SEARCH.value,
                TrialRecord.state == TrialState.COMPLETE.value,
                TrialRecord.params_key.in_(keys),
            )
            .order_by(TrialRecord.number)
        ).all()
        return [_row(r) for r in sources] + runs

    def best_values(
        self, study_ids: Collection[str], directions: dict[str, list[str]]
    ) -> dict[str, float]:
        """Best finite first value of each single-objective study with a complete trial."""
        single = {sid: dirs[0] for sid in study_ids if len(dirs := directions.get(sid, [])) == 1}
        if not single:
            return {}
        rows = self._session.execute(
            select(TrialRecord.study_id, func.min(TrialRecord.value), func.max(TrialRecord.value))
            .where(
                TrialRecord.study_id.in_(list(single)),
                TrialRecord.kind == TrialKind.SEARCH.value,
                TrialRecord.state == TrialState.COMPLETE.value,
                TrialRecord.value.is_not(None),
            )
            .group_by(TrialRecord.study_id)
        ).all()
        result = {}
        for sid, low, high in rows:
            best = high if single[sid] == "maximize" else low
            if best is not None:
                result[str(sid)] = float(best)
        return result

    def best_row(self, study_id: str, direction: str) -> TrialRow | None:
        """The complete row with the best first value (ties: lowest number), one query."""
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"direction must be maximize or minimize, got {direction!r}")
        order = TrialRecord.value.desc() if direction == "maximize" else TrialRecord.value.asc()
        row = self._session.execute(
            select(*_COLUMNS)
            .where(
                TrialRecord.study_id == study_id,
                TrialRecord.state == TrialState.COMPLETE.value,
                TrialRecord.value.is_not(None),
                TrialRecord.number.is_not(None),
            )
            .order_by(order, TrialRecord.number)
            .limit(1)
        ).first()
        return None if row is None else _row(row)

    def completed_values(self, study_id: str) -> list[list[float]]:
        """The value vectors of the study's complete trials, by number."""
        return [
            list(values)
            for values in self._session.scalars(
                select(TrialRecord.values)
                .where(
                    TrialRecord.study_id == study_id,
                    TrialRecord.kind == TrialKind.SEARCH.value,
                    TrialRecord.state == TrialState.COMPLETE.value,
                    TrialRecord.values.is_not(None),
                )
                .order_by(TrialRecord.number)
            )
            if values is not None
        ]

    def page(
        self,
        study_id: str,
        offset: int,
        limit: int,
        states: Collection[str] | None = None,
    ) -> tuple[list[TrialRow], int]:
        """One page of the study's trials by number (rows that have one), and the total.

        Args:
            states: API state names (or ours) to keep; None or empty for all.
        """
        if offset < 0 or limit < 1:
            raise ValueError(f"need offset >= 0 and limit >= 1, got {offset=}, {limit=}")
        where = [
            TrialRecord.study_id == study_id,
            TrialRecord.number.is_not(None),
            TrialRecord.kind == TrialKind.SEARCH.value,
        ]
        wanted = _api_states(states)
        if wanted is not None:
            where.append(TrialRecord.state.in_(wanted))
        total = self._session.scalar(select(func.count()).select_from(TrialRecord).where(*where))
        rows = self._session.execute(
            select(*_COLUMNS).where(*where).order_by(TrialRecord.number).offset(offset).limit(limit)
        ).all()
        return [_row(r) for r in rows], int(total or 0)

    def by_number(self, study_id: str, number: int) -> TrialRow | None:
        """The study's trial with this Optuna number (None: no such trial), one indexed query."""
        row = self._session.execute(
            select(*_COLUMNS).where(TrialRecord.study_id == study_id, TrialRecord.number == number)
        ).first()
        return None if row is None else _row(row)

    def rows_by_id(self, row_ids: Collection[int]) -> dict[int, TrialRow]:
        """The rows with these ids (of any study), by id; missing ids are left out."""
        if not row_ids:
            return {}
        query = select(*_COLUMNS).where(TrialRecord.id.in_(list(row_ids)))
        return {row.id: row for row in map(_row, self._session.execute(query).all())}

    def rows(
        self,
        study_id: str,
        states: Collection[str] | None = None,
        *,
        numbers: Collection[int] | None = None,
    ) -> list[TrialRow]:
        """Every row of the study in `states` (API names or ours; None for all) and, when
        given, with one of these trial `numbers`; by id."""
        where = [TrialRecord.study_id == study_id]
        wanted = _api_states(states)
        if wanted is not None:
            where.append(TrialRecord.state.in_(wanted))
        if numbers is not None:
            where.append(TrialRecord.number.in_(list(numbers)))
        query = select(*_COLUMNS).where(*where).order_by(TrialRecord.id)
        return [_row(r) for r in self._session.execute(query).all()]

    def numbers_with_params(
        self, study_id: str, params: Collection[dict[str, Any]]
    ) -> dict[str, list[int]]:
        """The trial numbers of the study's running, complete or pruned rows with each of these
        params, by ``params_key`` (`storage.models.params_key`), in one query for a batch.

        Filtered on the ``(study_id, params_key)`` index only: a bound on ``number`` in the
        query made SQLite walk the study's ``(study_id, number)`` index instead (10,000 rows
        per lookup at 10,000 trials)."""
        keys = {params_key(p) for p in params}
        if not keys:
            return {}
        found: dict[str, list[int]] = {}
        for key, number in self._session.execute(
            select(TrialRecord.params_key, TrialRecord.number)
            .where(
                TrialRecord.study_id == study_id,
                TrialRecord.params_key.in_(keys),
                TrialRecord.state.in_(_REPEATABLE),
                TrialRecord.number.is_not(None),
            )
            .order_by(TrialRecord.number)
        ).all():
            if key is not None and number is not None:  # what the query selects
                found.setdefault(key, []).append(number)
        return found

    def finished_durations(self) -> list[tuple[str, float]]:
        """(state, seconds) of every finished trial with both timestamps, all studies."""
        rows = self._session.execute(
            select(TrialRecord.state, TrialRecord.started_at, TrialRecord.finished_at).where(
                TrialRecord.state.in_(FINISHED),
                TrialRecord.started_at.is_not(None),
                TrialRecord.finished_at.is_not(None),
            )
        ).all()
        return [
            (str(state), max(0.0, (finished - started).total_seconds()))
            for state, started, finished in rows
            if started is not None and finished is not None
        ]


__all__ = ["ACTIVE", "API_STATES", "FINISHED", "UNFINISHED", "TrialReads", "TrialRow"]
