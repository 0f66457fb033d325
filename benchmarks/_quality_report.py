"""docs/search-quality.md for benchmarks/search_quality.py: the tables, the plain reading
generated from the numbers, and the plot (matplotlib when installed)."""

from __future__ import annotations

import logging
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from _quality_math import Spread, delta_m_spread, mean_metrics, oriented, spread, within_noise

logger = logging.getLogger("search_quality")

Metrics = dict[str, float]
#: `optuna.samplers.TPESampler`'s default n_startup_trials, which the service keeps.
TPE_STARTUP_TRIALS = 10
#: The service's MedianPruner(n_warmup_steps=2) first judges a trial after epoch 2 (later
#: for strategies with a warm-up of their own, e.g. dwa).
MEDIAN_FIRST_EPOCH = 2


@dataclass
class Confirmed:
    """How a study kind's answers were confirmed, one entry per study seed: the search's own
    best validation Δm% (its luckiest trial), uniform weights' Δm% at the confirmation seeds,
    the verdict of the confirmed best against them; and the confirmation's compute per
    study, which the row's compute leaves out."""

    search_val: list[float]
    uniform_val: list[float]
    uniform_test: list[float]
    verdicts: list[str]  # better | within_noise | worse | unknown ("task: ..." per task)
    trial_epochs: float
    cpu_s: float
    run_s: float  # the service's compute_s: run durations summed, a batched pass per run
    runs: int = 0  # over all study seeds
    failed: int = 0

    def verdict_counts(self) -> str:
        counts = Counter(self.verdicts)
        return ", ".join(f"{v} {n}" for v, n in sorted(counts.items())) or "none"


@dataclass
class Row:
    """One reported configuration: the metrics of its pick at each seed (validation, and the
    test metrics read once for that pick) and the compute spent to find it, per seed. A
    study's pick is its confirmed best (means over the confirmation seeds), its compute the
    search's alone; ``confirmed`` holds the rest."""

    approach: str
    group: str  # "single-task", "strategy", "grid", "study"
    val_runs: list[Metrics]
    test_runs: list[Metrics]
    trial_epochs: float
    cpu_s: float
    note: str = ""
    confirmed: Confirmed | None = None


@dataclass
class ExperimentResult:
    name: str
    directions: dict[str, bool]  # task -> higher is better, in task order
    baselines_val: Metrics
    baselines_test: Metrics
    rows: list[Row]
    grid_ratios: list[float]
    grid_val: list[Metrics]  # mean over seeds, per grid point
    grid_test: list[Metrics]
    grid_front: list[int]  # grid points on the validation Pareto front
    sizes: str
    n_trials: int = 0  # per study
    epochs: int = 0  # per trial
    confirm: str = ""  # what each study confirmed after its search, in words
    hypervolume: dict[str, float] = field(default_factory=dict)
    plot: str | None = None

    def val_delta(self, row: Row) -> Spread:
        return delta_m_spread(row.val_runs, self.baselines_val, self.directions)

    def test_delta(self, row: Row) -> Spread:
        return delta_m_spread(row.test_runs, self.baselines_test, self.directions)

    def row(self, approach: str) -> Row | None:
        return next((r for r in self.rows if r.approach == approach), None)


def _fmt(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def table(result: ExperimentResult) -> str:
    tasks = list(result.directions)
    arrows = {t: "↑" if up else "↓" for t, up in result.directions.items()}
    head = (
        "| approach | "
        + " | ".join(f"test {t} {arrows[t]}" for t in tasks)
        + " | val Δm% | test Δm% | trial-epochs | CPU-hours | note |"
    )
    lines = [head, "|" + "---|" * (len(tasks) + 6)]
    for row in result.rows:
        means = mean_metrics(row.test_runs)
        lines.append(
            f"| {row.approach} | "
            + " | ".join(_fmt(means[t]) for t in tasks)
            + f" | {result.val_delta(row)} | {result.test_delta(row)} | "
            f"{row.trial_epochs:.0f} | {row.cpu_s / 3600:.3g} | {row.note} |"
        )
    return "\n".join(lines)


def _spread_or_dash(values: Sequence[float]) -> str:
    return str(spread(values)) if values else "–"


def confirmation_table(result: ExperimentResult) -> str:
    """Per study kind: the search's luckiest trial against its confirmed best, uniform weights
    at the same seeds, the verdicts, and the confirmation's own compute per study."""
    rows = [r for r in result.rows if r.confirmed is not None]
    if not rows:
        return ""
    lines = [
        "| study | search's best val Δm% | confirmed val Δm% | confirmed test Δm% | "
        "uniform val Δm% | uniform test Δm% | verdicts (best vs uniform) | "
        "confirmation trial-epochs | confirmation CPU-hours | run-seconds (service) | runs |",
        "|" + "---|" * 11,
    ]
    for row in rows:
        c = row.confirmed
        assert c is not None
        lines.append(
            f"| {row.approach} | {_spread_or_dash(c.search_val)} | {result.val_delta(row)} | "
            f"{result.test_delta(row)} | {_spread_or_dash(c.uniform_val)} | "
            f"{_spread_or_dash(c.uniform_test)} | {c.verdict_counts()} | {c.trial_epochs:.0f} | "
            f"{c.cpu_s / 3600:.3g} | {c.run_s:.0f} | {c.runs} ({c.failed} failed) |"
        )
    return "\n".join(lines)


def _best(result: ExperimentResult, groups: Sequence[str]) -> Row:
    """The row with the best mean validation Δm% (test is never used to choose)."""
    candidates = [r for r in result.rows if r.group in groups]
    return max(candidates, key=lambda r: result.val_delta(r).mean)


def _noise_word(a: Spread, b: Spread) -> str:
    if a.n < 2 and b.n < 2:
        return "with one seed each, so no noise estimate"
    return "within the seed noise" if within_noise(a, b) else "more than the seed noise"


def plain_reading(result: ExperimentResult) -> list[str]:
    """Sentences from the numbers: who won, by how much, at what cost, what is noise."""
    out: list[str] = []
    best = _best(result, ("strategy", "grid", "study"))
    best_delta = result.test_delta(best)
    out.append(
        f"Best by validation Δm%: **{best.approach}** ({result.val_delta(best)} on validation, "
        f"{best_delta} on test"
        + ("; the study's confirmed best" if best.confirmed is not None else "")
        + ")."
    )
    uniform = result.row("strategy:fixed (uniform)")
    grid = result.row("grid best (val)")
    if uniform is not None and grid is not None:
        u, g = result.test_delta(uniform), result.test_delta(grid)
        out.append(
            f"The grid's best weights (chosen on validation) reach {g} against uniform weights' "
            f"{u}: a difference of {g.mean - u.mean:+.2f} points, {_noise_word(g, u)}."
        )
    strategies = [r for r in result.rows if r.group == "strategy"]
    if strategies and grid is not None:
        top = max(strategies, key=lambda r: result.val_delta(r).mean)
        t, g = result.test_delta(top), result.test_delta(grid)
        out.append(
            f"The best strategy at its defaults is {top.approach} ({t}); against the grid's "
            f"best ({g}) that is {_noise_word(t, g)}."
        )
    if grid is not None:
        g_val = result.val_delta(grid)
        for row in (r for r in result.rows if r.group == "study" and r.val_runs):
            out.append(_study_sentence(result, row, grid, g_val))
    overstated = [
        statistics.fmean(r.confirmed.search_val) - result.val_delta(r).mean
        for r in result.rows
        if r.confirmed is not None and r.confirmed.search_val and r.val_runs
    ]
    if overstated:
        verdicts = Counter(v for r in result.rows if r.confirmed for v in r.confirmed.verdicts)
        out.append(
            "The search's best trial's validation Δm% minus its confirmed best's (at other "
            f"seeds): {statistics.fmean(overstated):+.2f} points on average over the study "
            f"kinds (per kind {min(overstated):+.2f} to {max(overstated):+.2f}; positive: the "
            "search overstated). The confirmed best against uniform weights at the same seeds, "
            "every study (per task for a multi-objective one): "
            + ", ".join(f"{v} {n}" for v, n in sorted(verdicts.items()))
            + "."
        )
    k1 = {r.approach.replace("K=1", "K"): r for r in result.rows if r.approach.endswith("K=1")}
    for row in result.rows:
        if row.approach.endswith("K=32") and row.approach.replace("K=32", "K") in k1:
            one = k1[row.approach.replace("K=32", "K")]
            a, b = result.val_delta(row), result.val_delta(one)
            out.append(
                f"Asking 32 at a time against one at a time ({one.approach}): validation Δm% "
                f"{a} vs {b}, {_noise_word(a, b)}."
            )
    spread_over_grid = [
        oriented(m, result.directions) for m in result.grid_val
    ]  # how much the weights move each task
    xs, ys = [p[0] for p in spread_over_grid], [p[1] for p in spread_over_grid]
    tasks = list(result.directions)
    out.append(
        f"Over the grid, validation {tasks[0]} ranges over {max(xs) - min(xs):.4f} and "
        f"{tasks[1]} over {max(ys) - min(ys):.4f}: "
        + (
            "the weights move the tasks, so searching them is worth its cost on a model "
            "like this one."
            if grid is not None
            and uniform is not None
            and not within_noise(result.test_delta(grid), result.test_delta(uniform))
            else "whether that is more than noise is decided by the Δm% comparison above."
        )
    )
    if result.n_trials:
        guided = max(0, result.n_trials - TPE_STARTUP_TRIALS)
        out.append(
            f"Each study ran {result.n_trials} trials; Optuna's TPE draws its first "
            f"{TPE_STARTUP_TRIALS} at random, so {guided} of them were model-guided (and with "
            f"K=32 every trial was asked before any was told)"
            + (f"; then it confirmed its {result.confirm}." if result.confirm else ".")
        )
    if result.n_trials and result.epochs:
        out.append(
            f"With {result.epochs} epochs per trial the median pruner, which judges from "
            f"epoch {MEDIAN_FIRST_EPOCH} and only after 5 complete trials, can save at most "
            f"{max(0, result.epochs - MEDIAN_FIRST_EPOCH)} epochs of a trial."
        )
    if result.hypervolume:
        hv = result.hypervolume
        out.append(
            f"Multi-objective study: hypervolume {hv['study_mean']:.4g} ± {hv['study_std']:.2g} "
            f"against the grid's {hv['grid']:.4g} (ratio {hv['study_mean'] / hv['grid']:.2f}; "
            "reference point: the worst value of each task over the grid's points and every "
            "study's trials, on validation; grid points are means over seeds, study trials "
            "single runs)."
            if hv.get("grid")
            else "Multi-objective study: the grid's front has zero hypervolume."
        )
    return out


def _study_sentence(result: ExperimentResult, row: Row, grid: Row, g_val: Spread) -> str:
    v = result.val_delta(row)
    share = row.trial_epochs / grid.trial_epochs if grid.trial_epochs else float("nan")
    reached = v.mean >= g_val.mean or within_noise(v, g_val)
    c = row.confirmed
    # A population's answer is its best member, not confirmed at further seeds.
    answer = "confirmed validation" if c is not None else "best member's validation"
    text = (
        f"{row.approach}: {answer} Δm% {v} against the grid's {g_val} "
        f"({'reached' if reached else 'not reached'} within the noise)"
    )
    if c is not None and c.search_val:
        text += f"; the search's own best trial said {spread(c.search_val)}"
    text += f"; the search took {share:.2f}x the grid's trial-epochs per study"
    if c is not None:
        extra = c.trial_epochs / grid.trial_epochs if grid.trial_epochs else float("nan")
        text += (
            f", its confirmation another {extra:.2f}x; against uniform weights at the same "
            f"seeds: {c.verdict_counts()}"
        )
    return text + "."


def plot(result: ExperimentResult, path: Path) -> bool:
    """Task 1 vs task 2 test metric: every grid point, the grid's front, each strategy and
    each study's pick. False (and a log line) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plot for %s", result.name)
        return False
    t1, t2 = list(result.directions)
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter(
        [m[t1] for m in result.grid_test],
        [m[t2] for m in result.grid_test],
        s=12,
        c="lightgray",
        label="grid (mean over seeds)",
    )
    front = sorted((result.grid_test[i] for i in result.grid_front), key=lambda m: m[t1])
    ax.plot([m[t1] for m in front], [m[t2] for m in front], "k-", lw=1, label="grid's front")
    markers = {"strategy": "o", "grid": "*", "study": "s", "single-task": "x"}
    for row in result.rows:
        means = mean_metrics(row.test_runs)
        ax.scatter(
            [means[t1]], [means[t2]], marker=markers.get(row.group, "."), s=40, label=row.approach
        )
    ax.set_xlabel(f"test {t1} ({'higher' if result.directions[t1] else 'lower'} is better)")
    ax.set_ylabel(f"test {t2} ({'higher' if result.directions[t2] else 'lower'} is better)")
    ax.set_title(result.name)
    ax.legend(fontsize=6, loc="best", ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def document(
    results: Sequence[ExperimentResult],
    command: str,
    machine: str,
    stamp: str,
    settings: Mapping[str, str],
) -> str:
    parts = [
        "# Does the search pay?\n",
        "Written by `benchmarks/search_quality.py`; every number below comes from the run "
        "named next to it. Selection is on validation only; the test metrics are those of "
        "each reported configuration (a strategy at its defaults, the grid point with the "
        "best mean validation Δm%, each study's confirmed best), read once. A study's "
        "confirmed best is its answer, `GET /studies/{id}/best`: after the search, its top "
        "configurations and uniform weights are retrained at further seeds, and the best "
        "by mean validation objective over those seeds is reported with its mean metrics "
        "(not the search's luckiest trial, which the Confirmation table shows beside it); "
        "the verdict compares it with uniform weights at the same seeds (more than twice the "
        "standard error of the difference counts as better or worse). Δm% is "
        "against the single-task baselines of the same sizes (mean over seeds; LibMTL's "
        "sign convention, so a lower MAE is a gain); `a ± s` is the mean and sample standard "
        "deviation over seeds (study seeds for studies). Compute is per seed / per study: "
        "trial-epochs, and CPU-hours of the training process (this process for the "
        "in-process runs; the worker process for the studies, its start-up excluded). A "
        "study's compute in the main table is its search's; its confirmation runs are "
        "counted apart, in the Confirmation table (worker CPU from the first status poll "
        "that saw the study confirming; run-seconds are the service's `compute_s`, the "
        "runs' durations summed, so a batched pass counts once per run in it). "
        '"Within the seed noise" means the means differ by less than the larger of the two '
        "standard deviations. A study with K=32 ran on a worker with `--batch min(32, "
        "n_trials)`: with fewer trials than K every trial is asked before any is told either "
        "way, and the trainer would compute the free slots too.\n",
        f"Command: `{command}`  \nMachine: {machine}  \nRun: {stamp}\n",
        "Settings: " + "; ".join(f"{k} {v}" for k, v in settings.items()) + "\n",
    ]
    for result in results:
        parts.append(f"## {result.name}\n")
        parts.append(f"Command: `{command}`  \nMachine: {machine}  \nSizes: {result.sizes}\n")
        base = ", ".join(
            f"{t} {_fmt(result.baselines_test[t])} (val {_fmt(result.baselines_val[t])})"
            for t in result.directions
        )
        parts.append(f"Single-task baselines (test): {base}.\n")
        parts.append(table(result) + "\n")
        confirmations = confirmation_table(result)
        if confirmations:
            parts.append("Confirmation of the studies' best (per study, mean over study seeds):\n")
            parts.append(confirmations + "\n")
        if result.plot:
            parts.append(f"![{result.name}: task 1 vs task 2 test metric]({result.plot})\n")
        else:
            parts.append("No plot: matplotlib is not installed in this environment.\n")
        parts.append("### Plain reading\n")
        parts.extend(f"- {line}" for line in plain_reading(result))
        parts.append("")
    parts.append(
        "## Published figures\n\n"
        "Sener & Koltun (NeurIPS 2018) and Lin et al. (NeurIPS 2019) train LeNet on MultiMNIST "
        "on the full training set for many more epochs than the CPU configuration here; only "
        "a `--full` run is comparable with their figures, and the reduced runs are not.\n"
    )
    return "\n".join(parts)
