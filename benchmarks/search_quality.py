"""Does the search pay? Fixed-weight search against every weighting strategy, on real data.

For each experiment (default: multi_mnist, adult, adult_mixed; 2 tasks each):

  single-task baselines: each task alone, at every seed (the Δm% reference);
  strategies: every registered strategy at its default hyper-parameters and equal weights
      (``fixed`` with equal weights is "uniform"), at every seed;
  grid: the second task's weight (the first's is 1) on a log grid, at every seed; its best
      point by mean validation Δm% is the exhaustive reference;
  studies: the service's own TPE studies, submitted over REST to a real server (a SQLite
      file) and trained by real `mtlsearch worker --batch K` processes: over the weights only,
      and over weights + strategy choice + the strategies' hyper-parameters; each with pruning
      (median) and without; with K = 1 and K = 32; at several study seeds; each study's
      answer is its confirmed best (`GET /best`: its top configurations and uniform weights
      retrained at further seeds), the search's luckiest trial shown beside it;
  multi-objective (adult_mixed): a multi-objective TPE study over the weights; its
      hypervolume on validation against the grid's.

The first three train in this process with the batched trainer. Selection is on validation
only; test metrics are those of each reported configuration. The report (tables, plain reading,
one PNG per experiment when matplotlib is installed) goes to --out. Usage (repository root):

    .venv/bin/python benchmarks/search_quality.py --data-dir ../shared/data          # CPU
    .venv/bin/python benchmarks/search_quality.py --quick --data-dir ../shared/data  # smoke
    python benchmarks/search_quality.py --full --device cuda --data-dir .data        # GPU
"""

from __future__ import annotations

import argparse
import itertools
import logging
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from _quality_config import parse_args, sizes_for  # noqa: E402
from _quality_math import (  # noqa: E402
    delta_m_spread,
    hypervolume_2d,
    log_grid,
    mean_metrics,
    oriented,
    pareto_front,
    worst_corner,
)
from _quality_report import Confirmed, ExperimentResult, Row, document, plot  # noqa: E402
from _quality_studies import Confirm, Service, StudyKind, StudyRun, study_spec  # noqa: E402
from _quality_train import (  # noqa: E402
    Sizes,
    Trained,
    grid_labelled,
    grid_weights,
    load,
    single_task_labelled,
    strategy_labelled,
    train_labelled,
)
from _report import command_line, machine  # noqa: E402

from mtl_core.experiments import get_experiment  # noqa: E402
from mtl_core.metrics_delta import delta_m  # noqa: E402
from mtlsearch.search.objective import higher_is_better  # noqa: E402

logger = logging.getLogger("search_quality")


def _per_seed(trained: Trained, seeds: int) -> tuple[float, float]:
    return trained.trial_epochs / seeds, trained.cpu_s / seeds


def in_process_rows(
    experiment: str, sizes: Sizes, data_dir: Path, result: ExperimentResult
) -> Trained:
    """Baselines, strategies and the grid: fills ``result`` and returns the grid's runs."""
    tasks = list(result.directions)
    data = load(experiment, data_dir, sizes)
    logger.info("%s: single-task baselines", experiment)
    alone_trained = train_labelled(single_task_labelled(experiment, sizes), data, data_dir)
    alone = alone_trained.by_label()
    alone_epochs, alone_cpu = _per_seed(alone_trained, sizes.seeds)
    for task in tasks:
        result.baselines_val[task] = statistics.fmean(r.val[task] for r in alone[f"alone:{task}"])
        result.baselines_test[task] = statistics.fmean(r.test[task] for r in alone[f"alone:{task}"])
    per_seed = [{t: alone[f"alone:{t}"][s] for t in tasks} for s in range(sizes.seeds)]
    result.rows.append(
        Row(
            "single-task (each task alone)",
            "single-task",
            [{t: runs[t].val[t] for t in tasks} for runs in per_seed],
            [{t: runs[t].test[t] for t in tasks} for runs in per_seed],
            trial_epochs=alone_epochs,
            cpu_s=alone_cpu,
            note=f"{len(tasks)} models per seed",
        )
    )
    for label, configs in itertools.groupby(
        strategy_labelled(experiment, sizes), key=lambda item: item[0]
    ):
        logger.info("%s: %s", experiment, label)
        trained = train_labelled(list(configs), data, data_dir)
        epochs, cpu = _per_seed(trained, sizes.seeds)
        name = label + (" (uniform)" if label == "strategy:fixed" else "")
        result.rows.append(
            Row(
                name,
                "strategy",
                [r.val for r in trained.runs],
                [r.test for r in trained.runs],
                epochs,
                cpu,
                "defaults, equal weights",
            )
        )
    ratios = log_grid(*sizes.weight_range, sizes.grid_points)
    logger.info("%s: grid of %d weight ratios x %d seeds", experiment, len(ratios), sizes.seeds)
    grid = train_labelled(grid_labelled(experiment, sizes, ratios), data, data_dir)
    by_point = grid.by_label()
    points = [by_point[f"grid:{i}"] for i in range(len(ratios))]
    result.grid_ratios = ratios
    result.grid_val = [mean_metrics([r.val for r in runs]) for runs in points]
    result.grid_test = [mean_metrics([r.test for r in runs]) for runs in points]
    result.grid_front = pareto_front([oriented(m, result.directions) for m in result.grid_val])
    val_deltas = [
        delta_m_spread([r.val for r in runs], result.baselines_val, result.directions).mean
        for runs in points
    ]
    best = max(range(len(points)), key=lambda i: val_deltas[i])
    weights = grid_weights(experiment, ratios)[best]
    result.rows.append(
        Row(
            "grid best (val)",
            "grid",
            [r.val for r in points[best]],
            [r.test for r in points[best]],
            grid.trial_epochs,
            grid.cpu_s,
            f"{tasks[1]}/{tasks[0]} = {weights[tasks[1]]:.3g}; cost: the whole grid",
        )
    )
    return grid


def _study_note(runs: list[StudyRun], picks: list[dict[str, Any]]) -> str:
    described = []
    for pick in picks:
        strategy = pick.get("strategy") or (pick.get("config") or {}).get("strategy", "?")
        weights = pick.get("weights_normalised") or {}
        described.append(f"{strategy} " + "/".join(f"{w:.3g}" for w in weights.values()))
    states: dict[str, int] = {}
    for run in runs:
        for state, count in run.states().items():
            states[state] = states.get(state, 0) + count
    return (
        "confirmed: "
        + "; ".join(described)
        + " — search: "
        + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    )


def _uniform_deltas(run: StudyRun, result: ExperimentResult) -> tuple[float, float] | None:
    """Validation and test Δm% of uniform weights' means over the confirmation seeds."""
    uniform = run.confirmation.get("uniform") or {}
    val = {t: s["mean"] for t, s in (uniform.get("val_metrics") or {}).items() if s}
    test = {t: s["mean"] for t, s in (uniform.get("test_metrics") or {}).items() if s}
    if set(val) != set(result.directions) or set(test) != set(result.directions):
        return None
    return (
        delta_m(val, result.baselines_val, result.directions),
        delta_m(test, result.baselines_test, result.directions),
    )


def _confirmed(
    runs: list[StudyRun], result: ExperimentResult, search_val: list[float], verdicts: list[str]
) -> Confirmed:
    uniform = [d for run in runs if (d := _uniform_deltas(run, result)) is not None]
    return Confirmed(
        search_val=search_val,
        uniform_val=[u[0] for u in uniform],
        uniform_test=[u[1] for u in uniform],
        verdicts=verdicts,
        trial_epochs=statistics.fmean(r.confirm_epochs for r in runs),
        cpu_s=statistics.fmean(r.confirm_cpu_s for r in runs),
        run_s=statistics.fmean(float(r.confirmation.get("compute_s") or 0.0) for r in runs),
        runs=sum(int(r.confirmation.get("runs") or 0) for r in runs),
        failed=sum(int(r.confirmation.get("failed") or 0) for r in runs),
    )


def study_rows(
    experiment: str,
    sizes: Sizes,
    args: argparse.Namespace,
    service: Service,
    result: ExperimentResult,
    n_trials: int,
) -> None:
    baselines = dict(result.baselines_val)
    confirm = Confirm(args.confirm_top, args.confirm_seeds)
    # Grouped by K: one worker runs at a time, and a new K replaces it.
    kinds = [
        StudyKind(space, pruner, k, args.sampler)
        for k in args.batches
        for space in ("weights", "weights+strategy")
        if space in args.spaces
        for pruner in ("none", "median")
        if pruner in args.pruners
    ]
    if experiment == "adult_mixed" and "multi" in args.spaces:
        kinds.append(StudyKind("multi", "none", args.batches[0], args.sampler))
    if "population" in args.spaces:
        # At the trial-epochs of the weight studies: their budget, trained as one population.
        kinds.append(StudyKind("population", "none", n_trials, args.sampler))
    for kind in kinds:
        runs: list[StudyRun] = []
        for seed in range(args.study_seeds):
            logger.info("%s: study %s, seed %d (%d trials)", experiment, kind.label, seed, n_trials)
            spec = study_spec(experiment, kind, seed, n_trials, sizes, baselines, confirm)
            runs.append(service.run(spec, kind, seed))
        if kind.space == "multi":
            _multi_objective(result, runs)
            continue
        if kind.space == "population":
            _population(result, kind, runs)
            continue
        picked = [best for run in runs if (best := run.confirmed()) is not None]
        if len(picked) < len(runs):
            logger.warning("%s: %s: a study has no confirmed best", experiment, kind.label)
        if not picked:
            continue
        search_val = [
            delta_m(pick["val_metrics"], result.baselines_val, result.directions)
            for run in runs
            if (pick := run.pick()) is not None
        ]
        result.rows.append(
            Row(
                kind.label,
                "study",
                [p["val_metrics"] for p in picked],
                [p["test_metrics"] for p in picked],
                statistics.fmean(r.trial_epochs for r in runs),
                statistics.fmean(r.cpu_s for r in runs),
                _study_note(runs, picked),
                _confirmed(runs, result, search_val, [r.verdict() for r in runs]),
            )
        )


def _population(result: ExperimentResult, kind: StudyKind, runs: list[StudyRun]) -> None:
    """A population study's answer is its best member (`GET /best`, one seed: a population's
    trajectory is not confirmed at further seeds)."""
    picks = [run.best for run in runs if run.best.get("val_metrics")]
    if not picks:
        logger.warning("%s: %s: no member completed", result.name, kind.label)
        return
    copies = sum(
        len((t.get("population") or {}).get("lineage") or []) for run in runs for t in run.complete
    )
    described = "; ".join(
        "→".join(
            "/".join(f"{w:.3g}" for w in step["weights"].values())
            for step in (pick.get("population") or {}).get("trajectory", [])
        )
        for pick in picks
    )
    result.rows.append(
        Row(
            kind.label,
            "study",
            [p["val_metrics"] for p in picks],
            [p["test_metrics"] for p in picks],
            statistics.fmean(r.trial_epochs for r in runs),
            statistics.fmean(r.cpu_s for r in runs),
            f"best member's weights by epoch: {described} — {copies} copies in "
            f"{len(runs)} studies; not confirmed (one seed)",
        )
    )


def _multi_objective(result: ExperimentResult, runs: list[StudyRun]) -> None:
    grid_points = [oriented(m, result.directions) for m in result.grid_val]
    study_points = [
        [oriented(t["val_metrics"], result.directions) for t in run.complete] for run in runs
    ]
    # The worst value of each task over the grid and every study: all of them count.
    reference = worst_corner(grid_points + [p for points in study_points for p in points])
    volumes = [hypervolume_2d(points, reference) for points in study_points]
    result.hypervolume = {
        "grid": hypervolume_2d(grid_points, reference),
        "study_mean": statistics.fmean(volumes),
        "study_std": statistics.stdev(volumes) if len(volumes) > 1 else 0.0,
    }

    def val_delta(record: dict[str, Any]) -> float:
        return delta_m(record["val_metrics"], result.baselines_val, result.directions)

    # The search's own pick (its best trial by val Δm%) against the confirmed front's.
    search_val = [max(map(val_delta, run.complete)) for run in runs if run.complete]
    picks, verdicts = [], []
    for run in runs:
        members = [m for m in run.best.get("pareto") or [] if "confirmed" in m]
        if not members:
            logger.warning("%s: a multi-objective study has no confirmed member", result.name)
            continue
        pick = max(members, key=val_delta)
        picks.append(pick)
        verdicts += [f"{t}: {v['judgement']}" for t, v in (pick.get("verdict") or {}).items()]
    if picks:
        result.rows.append(
            Row(
                "multi-objective TPE (pick: best val Δm% of its confirmed front)",
                "study",
                [p["val_metrics"] for p in picks],
                [p["test_metrics"] for p in picks],
                statistics.fmean(r.trial_epochs for r in runs),
                statistics.fmean(r.cpu_s for r in runs),
                _study_note(runs, picks),
                _confirmed(runs, result, search_val, verdicts),
            )
        )


def run_experiment(
    experiment: str, args: argparse.Namespace, service: Service | None
) -> ExperimentResult:
    sizes = sizes_for(experiment, args)
    started = time.perf_counter()
    n_trials = args.n_trials or max(2, sizes.grid_points * sizes.seeds // 5)  # <= 1/5 of the grid
    confirm = Confirm(args.confirm_top, args.confirm_seeds)
    result = ExperimentResult(
        name=experiment,
        directions=higher_is_better(get_experiment(experiment)),
        baselines_val={},
        baselines_test={},
        rows=[],
        grid_ratios=[],
        grid_val=[],
        grid_test=[],
        grid_front=[],
        n_trials=0 if service is None else n_trials,
        epochs=sizes.epochs,
        sizes=(
            f"epochs {sizes.epochs}; training samples "
            f"{sizes.max_train_samples or 'all'}; {sizes.seeds} seeds; grid "
            f"{sizes.grid_points} ratios in [{sizes.weight_range[0]:g}, "
            f"{sizes.weight_range[1]:g}]; studies: {args.study_seeds} seeds x {n_trials} "
            f"trials, K in {args.batches}, confirmation {confirm.label}; device {sizes.device}"
        ),
        confirm="" if service is None else confirm.label,
    )
    in_process_rows(experiment, sizes, args.data_dir, result)
    if service is not None:
        study_rows(experiment, sizes, args, service, result, n_trials)
    png = args.out.parent / f"{args.out.stem}-{experiment}.png"
    if plot(result, png):
        result.plot = png.name
    logger.info("%s done in %.0f s", experiment, time.perf_counter() - started)
    return result


#: Text below this line of the report is a person's reading of a run; a rerun keeps it (and
#: whoever reruns checks it against the new tables).
HAND_WRITTEN = "<!-- Written by hand below this line; search_quality.py keeps it on a rerun. -->"


def hand_written(path: Path) -> str:
    """The hand-written end of an existing report (from `HAND_WRITTEN` on), else ''."""
    if not path.exists():
        return ""
    text = path.read_text()
    at = text.find(HAND_WRITTEN)
    return "" if at < 0 else "\n" + text[at:]


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll otherwise
    args = parse_args(argv)
    started = time.perf_counter()
    results: list[ExperimentResult] = []
    service = None if args.no_studies else Service(args.data_dir, args.device)
    if service is not None:
        with service:
            results = [run_experiment(name, args, service) for name in args.experiments]
    else:
        results = [run_experiment(name, args, None) for name in args.experiments]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    settings = {"total wall time": f"{time.perf_counter() - started:.0f} s"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    kept = hand_written(args.out)
    args.out.write_text(document(results, command_line(), machine(), stamp, settings) + kept)
    logger.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
