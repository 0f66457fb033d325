"""CPU contention: what CPU work beside the trainer costs it, on a machine whose cores it uses.

The trainer alone (`mtl_core.batched.train_batch`, K trials per pass, torch's default intra-op
threads: one per core) against the same trainer with a stand-in for the worker's asker and
teller beside it: pure Python that wants a given share of one core (``--shares``), in 20 ms
periods, either in a process of its own or in a thread of the trainer's process (where it also
takes the GIL from the training thread). Reported: the trainer's wall time, the CPU seconds the
stand-in got, and the trainer's seconds lost per CPU second of the stand-in.

This is the ceiling of ``service / trainer`` in benchmarks/end_to_end.py on a CPU: the worker's
asker and teller (sampler, Optuna's writes, our rows) are such work, and the service cannot
beat the trainer slowed by them. Usage (repository root):

    .venv/bin/python benchmarks/cpu_contention.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import torch  # noqa: E402
from _report import write_section  # noqa: E402
from end_to_end import run_trainer  # noqa: E402

logger = logging.getLogger("cpu_contention")
PERIOD_S = 0.02


def burn(share: float, stop: Any, cpu_out: Any) -> None:
    """Take ``share`` of one core in pure Python until ``stop`` is set; report the CPU got."""
    started = time.thread_time()
    while not stop.is_set():
        period = time.thread_time()
        while time.thread_time() - period < PERIOD_S * share:
            sum(range(200))
        time.sleep(PERIOD_S * (1 - share))
    cpu_out.value = time.thread_time() - started


@dataclass
class Row:
    where: str
    share: float
    wall_s: float
    burner_cpu_s: float


class _Value:
    value = 0.0


def measure(where: str, share: float, args: argparse.Namespace) -> Row:
    side: Any = None
    cpu: Any = _Value()
    if where == "process":
        stop: Any = multiprocessing.Event()
        cpu = multiprocessing.Value("d", 0.0)
        side = multiprocessing.Process(target=burn, args=(share, stop, cpu))
    elif where == "thread":
        stop = threading.Event()
        side = threading.Thread(target=burn, args=(share, stop, cpu))
    else:
        stop = threading.Event()
    if side is not None:
        side.start()
    try:
        _, wall = run_trainer(
            args.experiment, args.trials, args.batch, args.epochs, None, args.data_dir
        )
    finally:
        stop.set()
        if side is not None:
            side.join()
    return Row(where, share, wall, float(cpu.value))


def table(rows: list[Row]) -> str:
    alone = min(r.wall_s for r in rows if r.where == "none")
    lines = [
        "| beside the trainer | wants (share of a core) | trainer wall (s) | its CPU (s) | "
        "trainer s lost per CPU s beside it |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lost = (r.wall_s - alone) / r.burner_cpu_s if r.burner_cpu_s > 0 else float("nan")
        name = "nothing" if r.where == "none" else f"Python in a {r.where}"
        shown = "-" if r.where == "none" else f"{r.share:.0%}"
        lines.append(
            f"| {name} | {shown} | {r.wall_s:.1f} | {r.burner_cpu_s:.1f} | "
            + ("-" if r.where == "none" else f"{lost:.2f}")
            + " |"
        )
    return "\n".join(lines)


def reading(rows: list[Row]) -> str:
    """The plain reading, from the figures."""
    alone = min(r.wall_s for r in rows if r.where == "none")
    cores = torch.get_num_threads()
    lost = {
        where: [(r.wall_s - alone) / r.burner_cpu_s for r in rows if r.where == where]
        for where in ("process", "thread")
    }
    span = {where: f"{min(v):.2f}-{max(v):.2f}" for where, v in lost.items() if v}
    return (
        f"How to read it: the trainer keeps {cores} threads busy, so a CPU second taken by "
        f"other work would cost it 1/{cores} = {1 / cores:.2f} s if the cores were shared "
        f"evenly; it lost {span.get('process', '-')} s per CPU second to work in another "
        f"process and {span.get('thread', '-')} s to work in a thread of its own process: its "
        "threads split each operation evenly and wait at its end for the one that was "
        "preempted. The worker's asker and teller are such work, so on a CPU the service "
        "cannot beat the trainer slowed by their CPU time (docs/benchmarks.md, End to end); "
        "on a GPU machine they run on cores that training leaves idle."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="adult")
    parser.add_argument("--trials", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64, help="K trials per pass")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--shares", type=float, nargs="+", default=[0.1, 0.2], help="of one core, each in (0, 1)"
    )
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if any(not 0 < s < 1 for s in args.shares):
        parser.error(f"--shares must each be in (0, 1), got {args.shares}")
    args.data_dir = args.data_dir.resolve()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    rows: list[Row] = []
    # Interleaved: the trainer alone is measured between the others, on a shared machine.
    for share in args.shares:
        for where in ("none", "process", "thread"):
            row = measure(where, share, args)
            logger.info(
                "%s, %.0f%%: trainer %.1f s, beside it %.1f CPU s",
                where,
                share * 100,
                row.wall_s,
                row.burner_cpu_s,
            )
            rows.append(row)
    body = (
        f"{args.experiment}, {args.trials} trials, K = {args.batch}, {args.epochs} epoch(s), all "
        "training samples, torch's default threads (one per core). Beside it: pure Python "
        "wanting the given share of one core in 20 ms periods, in a process of its own or in a "
        "thread of the trainer's process; nothing: the trainer alone (each row group measured "
        "in turn).\n\n" + table(rows) + "\n\n" + reading(rows)
    )
    print(body)
    if not args.no_write:
        write_section("CPU contention: work beside the trainer", body)


if __name__ == "__main__":
    main()
