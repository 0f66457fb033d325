"""The study's answer, ``GET /best``: the search's best, confirmed at further seeds when it was.

`best_answer` is what the REST, ``mtlsearch best``, the client and the stored ``best`` artifact
serve. Without confirmation runs (turned off, or the search not finished) it is the search's
best record (`mtlsearch.search.best`) with ``"confirmation": null``. With them:

* the top-level fields are those of the confirmed configuration with the highest mean
  objective (its weights, strategy, config, search trial ``number``), its ``values``,
  ``val_metrics`` and ``test_metrics`` the means over the confirmation seeds, ``confirmed``
  its own statistics: the objective and every task's validation and test metric as mean ± sd
  over the seeds (with the values), its runs (complete, failed);
* ``confirmation`` holds the seeds, the runs and their compute, the same statistics for every
  confirmed configuration (best first) and for uniform weights, and the ``verdict``: the best
  against uniform weights, in numbers and in words (`mtlsearch.search.confirmation.judge`).

A multi-objective study's ``pareto`` members each carry their own ``confirmed`` statistics and
a ``verdict`` per task against uniform weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from mtlsearch.search.best import best_record_from_rows, summarise
from mtlsearch.search.confirmation import UNIFORM, Spread, confirmation_seeds, judge
from mtlsearch.search.objective import directions
from mtlsearch.search.results import TrialOutcome
from mtlsearch.search.spec import StudySpec

if TYPE_CHECKING:
    from mtl_core.experiments import Experiment
    from storage import TrialRow

#: The unit a single objective's difference is said in.
UNITS = {"delta_m": "Δm% points", "weighted_mean": "objective points"}


def _spreads(runs: Sequence[TrialRow], field: str, tasks: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for task in tasks:
        spread = Spread.of(
            [
                float(metrics[task])
                for r in runs
                if (metrics := getattr(r, field)) and metrics.get(task) is not None
            ]
        )
        out[task] = spread.as_dict() if spread else None
    return out


def _objective(runs: Sequence[TrialRow], width: int) -> list[Spread | None]:
    return [Spread.of([(r.values or [])[i] for r in runs if r.values]) for i in range(width)]


def _configuration(
    key: str, runs: Sequence[TrialRow], width: int, tasks: Sequence[str]
) -> dict[str, Any]:
    complete = [r for r in runs if r.state == "complete"]
    objective = _objective(complete, width)
    return {
        "confirms": key,
        "objective": [s.as_dict() if s else None for s in objective],
        "val_metrics": _spreads(complete, "val_metrics", tasks),
        "test_metrics": _spreads(complete, "test_metrics", tasks),
        "runs": len(runs),
        "complete": len(complete),
        "failed": len([r for r in runs if r.state == "fail"]),
    }


def _verdict(best: Spread | None, uniform: Spread | None, unit: str) -> dict[str, Any]:
    if best is None or uniform is None:
        return {"judgement": "unknown", "text": "not enough complete confirmation runs to judge"}
    if best.n < 2 or uniform.n < 2:
        return {
            "judgement": "unknown",
            "text": "one seed each: no spread to judge the difference by; confirm at 2 or "
            "more seeds (confirmation.seeds)",
        }
    judgement, diff, se = judge(best, uniform)
    text = {
        "better": f"better than uniform weights by {diff:.3g} ± {se:.2g} {unit}: more than "
        "the seed noise",
        "within_noise": f"within the seed noise of uniform weights ({diff:+.3g} ± {se:.2g} "
        f"{unit}): keep uniform weights or widen the search",
        "worse": f"worse than uniform weights by {-diff:.3g} ± {se:.2g} {unit}: keep uniform "
        "weights",
    }[judgement]
    return {
        "judgement": judgement,
        "difference": diff,
        "standard_error": se,
        "unit": unit,
        "text": text,
    }


def _task_verdicts(
    member: Sequence[Spread | None], uniform: Sequence[Spread | None], tasks: Sequence[str]
) -> dict[str, Any]:
    return {
        task: _verdict(m, u, "points") for task, m, u in zip(tasks, member, uniform, strict=True)
    }


def best_answer(
    rows: Sequence[TrialRow],
    spec: StudySpec,
    experiment: Experiment,
    baselines: Mapping[str, float] | None,
) -> dict[str, Any] | None:
    """The study's answer from its ``mtl_trials`` rows (module docstring); None while no
    trial has completed."""
    searched = best_record_from_rows(rows, spec, experiment, baselines)
    if searched is None:
        return None
    runs = [r for r in rows if r.kind == "confirmation"]
    if not runs:
        return {**searched, "confirmation": None}
    study_directions = directions(spec, experiment)
    width = len(study_directions)
    tasks = list(experiment.task_names)
    by_key: dict[str, list[TrialRow]] = {}
    for run in runs:
        by_key.setdefault(run.confirms or "", []).append(run)
    uniform_runs = by_key.pop(UNIFORM, [])
    uniform_objective = _objective([r for r in uniform_runs if r.state == "complete"], width)
    first_of = _first_search_row(rows)
    entries: list[tuple[list[Spread | None], dict[str, Any]]] = []
    for key, group in by_key.items():
        source = first_of.get(key)
        complete = [r for r in group if r.state == "complete"]
        if source is None or not complete:
            continue
        objective = _objective(complete, width)
        entry = _entry(
            source, objective, _configuration(key, group, width, tasks), spec, experiment, baselines
        )
        if width > 1:
            entry["verdict"] = _task_verdicts(objective, uniform_objective, tasks)
        entries.append((objective, entry))
    about: dict[str, Any] = {
        "seeds": confirmation_seeds(spec),
        "runs": len(runs),
        "complete": len([r for r in runs if r.state == "complete"]),
        "failed": len([r for r in runs if r.state == "fail"]),
        "compute_s": sum(r.duration_s or 0.0 for r in runs),
        "uniform": _configuration(UNIFORM, uniform_runs, width, tasks) if uniform_runs else None,
    }
    if not entries:  # every run of the searched configurations failed, or none finished
        about["verdict"] = _verdict(None, None, "")
        return {**searched, "confirmation": about}
    record: dict[str, Any] = {
        "experiment": experiment.name,
        "tasks": tasks,
        "objective": spec.objective.kind,
        "directions": list(study_directions),
        "baselines": dict(baselines) if baselines else None,
    }
    if width > 1:
        return record | {"pareto": [entry for _, entry in entries], "confirmation": about}
    entries.sort(key=lambda pair: -(pair[0][0].mean if pair[0][0] else float("-inf")))
    best_objective, best_entry = entries[0]
    about["verdict"] = _verdict(
        best_objective[0], uniform_objective[0], UNITS.get(spec.objective.kind, "points")
    )
    about["configurations"] = [entry["confirmed"] for _, entry in entries]
    return record | best_entry | {"confirmation": about}


def _first_search_row(rows: Sequence[TrialRow]) -> dict[str, TrialRow]:
    """The first complete search row of each configuration (params key)."""
    from storage.models import params_key

    first: dict[str, TrialRow] = {}
    for row in sorted(rows, key=lambda r: r.number if r.number is not None else -1):
        if row.kind == "search" and row.state == "complete" and row.number is not None:
            first.setdefault(params_key(row.params or {}), row)
    return first


def _entry(
    source: TrialRow,
    objective: Sequence[Spread | None],
    confirmation: dict[str, Any],
    spec: StudySpec,
    experiment: Experiment,
    baselines: Mapping[str, float] | None,
) -> dict[str, Any]:
    """A confirmed configuration as the best record shows one: its search trial's weights,
    strategy and config, with the means over the confirmation seeds."""
    recorded = TrialOutcome.from_row(source)
    means = TrialOutcome(
        config=recorded.config,
        val_metrics={t: s["mean"] for t, s in confirmation["val_metrics"].items() if s},
        test_metrics={t: s["mean"] for t, s in confirmation["test_metrics"].items() if s},
        strategy_weights=recorded.strategy_weights,
    )
    values = [s.mean if s else float("nan") for s in objective]
    summary = summarise(
        source.number or 0, values, source.params or {}, means, spec, experiment, baselines
    )
    return asdict(summary) | {
        "search_values": list(source.values or []),
        "confirmed": confirmation,
    }


__all__ = ["UNITS", "best_answer"]
