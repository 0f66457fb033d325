"""benchmarks/fleet.py's figures: one `FleetRun` per fleet size, the table, and its reading
(sentences built from the measured numbers; none is typed by hand)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from _pg_activity import DatabaseCounters


@dataclass(frozen=True)
class FleetRun:
    """One N's figures (each one's definition: benchmarks/fleet.py's docstring)."""

    workers: int
    trials: int
    wall_s: float
    slept_s: float
    #: CPU seconds of the worker processes while they worked (all their threads).
    worker_cpu_s: float
    pg_cpu_s: float | None
    peak_connections: int
    lock_wait_samples: int
    peak_lock_waits: int
    ungranted_lock_samples: int
    #: The lock waits by ``wait_event`` (transactionid: a row another transaction is writing).
    lock_waits_by_event: dict[str, int]
    samples: int
    counters: DatabaseCounters
    #: Trials of the study by state, the prefilled ones included: Optuna's, and our rows'.
    optuna_states: dict[str, int]
    row_states: dict[str, int]

    @property
    def overhead_s(self) -> float:
        return (self.wall_s * self.workers - self.slept_s) / self.trials

    @property
    def per_hour(self) -> float:
        return self.trials / self.wall_s * 3600

    @property
    def pg_cpu_per_trial_s(self) -> float | None:
        return None if self.pg_cpu_s is None else self.pg_cpu_s / self.trials

    def machine_busy(self, cores: int) -> float:
        """Share of this machine's cores the workers and PostgreSQL's backends kept busy."""
        return (self.worker_cpu_s + (self.pg_cpu_s or 0.0)) / (self.wall_s * cores)


def cores() -> int:
    return len(os.sched_getaffinity(0))


def ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def table(runs: list[FleetRun]) -> list[str]:
    lines = [
        "| workers | trials | wall | trials/hour | overhead / trial | worker CPU / trial "
        "| PostgreSQL CPU / trial | machine CPU busy | peak connections | lock waits (peak) "
        "| ungranted locks | deadlocks | commits / trial |",
        "|---:" * 13 + "|",
    ]
    for run in runs:
        cells = [
            str(run.workers),
            f"{run.trials:,}",
            f"{run.wall_s:.1f} s",
            f"{run.per_hour:,.0f}",
            ms(run.overhead_s),
            ms(run.worker_cpu_s / run.trials),
            ms(run.pg_cpu_per_trial_s),
            f"{run.machine_busy(cores()):.0%}",
            str(run.peak_connections),
            f"{run.lock_wait_samples} ({run.peak_lock_waits})",
            str(run.ungranted_lock_samples),
            str(run.counters.deadlocks),
            f"{run.counters.commits / run.trials:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def reading(runs: list[FleetRun], max_connections: int) -> list[str]:
    """What the figures show, with the figures (sentences built from this run's numbers);
    `max_connections` is the server's."""
    by_n = {run.workers: run for run in runs}
    low, high = min(by_n), max(by_n)
    first, last = by_n[low], by_n[high]
    lines: list[str] = []
    if 1 in by_n and 16 in by_n:
        ratio = by_n[16].overhead_s / by_n[1].overhead_s
        verdict = "met" if ratio <= 2 else "not met"
        lines.append(
            f"Overhead per trial at N = 16 is {ratio:.2f}x that at N = 1 "
            f"({ms(by_n[16].overhead_s)} against {ms(by_n[1].overhead_s)}; target: within 2x, "
            f"{verdict})."
        )
    elif low != high:
        lines.append(
            f"Overhead per trial at N = {high} is {last.overhead_s / first.overhead_s:.2f}x "
            f"that at N = {low} ({ms(last.overhead_s)} against {ms(first.overhead_s)}); the "
            "target compares N = 16 with N = 1, which this run did not both measure."
        )
    if low != high:
        lines.append(
            f"The fleet finished {first.per_hour:,.0f} trials/hour with {workers(low)} and "
            f"{last.per_hour:,.0f} with {workers(high)}: {last.per_hour / first.per_hour:.1f}x "
            f"the rate for {high / low:g}x the workers."
        )
    pg = last.pg_cpu_per_trial_s
    if pg:
        lines.append(
            f"PostgreSQL's backends used {ms(pg)} of CPU and "
            f"{last.counters.commits / last.trials:.0f} commits per trial at N = {high}: at that "
            f"cost one server core would be fully busy at {3600 / pg:,.0f} trials/hour."
        )
    per_worker = last.peak_connections / high
    lines.append(
        f"Peak connections were {last.peak_connections} for {workers(high)} ({per_worker:.1f} "
        f"per worker): at that rate the server's max_connections of {max_connections} is "
        f"reached at about {max_connections / per_worker:.0f} workers."
    )
    waits = sum(run.lock_wait_samples for run in runs)
    deadlocks = sum(run.counters.deadlocks for run in runs)
    if waits or deadlocks:
        worst = max(runs, key=lambda run: run.lock_wait_samples)
        by_event = sorted(worst.lock_waits_by_event.items(), key=lambda item: -item[1])
        kinds = ", ".join(f"{event} {n}" for event, n in by_event)
        lines.append(
            f"Lock waits were seen most at N = {worst.workers}: {worst.lock_wait_samples} "
            f"backend(s) waiting on a lock over {worst.samples} samples ({kinds or 'none'}), at "
            f"most {worst.peak_lock_waits} at once; {deadlocks} deadlock(s) in all runs."
        )
    else:
        lines.append("No backend was seen waiting on a lock in any sample, and no deadlock.")
    lines.append(machine_reading(runs))
    return lines


def workers(n: int) -> str:
    return f"{n} worker" if n == 1 else f"{n} workers"


#: Share of the machine's cores above which the figures measure the machine, not the database.
SATURATED = 0.8


def machine_reading(runs: list[FleetRun]) -> str:
    """Whether the workers and PostgreSQL ran out of this machine's cores, and from which N."""
    n_cores = cores()
    ordered = sorted(runs, key=lambda run: run.workers)
    saturated = [run for run in ordered if run.machine_busy(n_cores) >= SATURATED]
    if not saturated:
        busiest = max(runs, key=lambda run: run.machine_busy(n_cores))
        return (
            f"The workers and PostgreSQL kept at most {busiest.machine_busy(n_cores):.0%} of "
            f"this machine's {n_cores} cores busy (N = {busiest.workers}), so the growth in "
            "overhead comes from the workers waiting on each other and on the database more "
            "than from their own CPU (other processes on the machine are not counted)."
        )
    first, last = saturated[0], ordered[-1]
    later = (
        f" ({last.machine_busy(n_cores):.0%} at N = {last.workers})" if last is not first else ""
    )
    return (
        f"From N = {first.workers} the workers and PostgreSQL kept "
        f"{first.machine_busy(n_cores):.0%} of this machine's {n_cores} cores busy{later}: "
        "from there the overhead measures every worker's share of one machine's CPU (the "
        "worker CPU column, which also grows as the workers contend for the cores) more than "
        "the database; on a fleet each worker has its own host's CPU, and PostgreSQL's "
        "columns are the ones that carry over."
    )
