"""Every architecture on MultiMNIST with the LeNet trunk and uniform weights: test accuracy and
the per-epoch time at K = 1 and K = 16 relative to hard sharing.

Accuracy: all 60,000 training pairs, the experiment's 10 epochs, one trial per seed (the seeds
of one architecture train side by side in one batched pass, which equals training them one by
one: tests/mtl_core/batched/test_equivalence_matrix.py). Timing: an epoch on
``--timing-samples`` training pairs (validation on ``--timing-eval-rows`` pairs included; the
faster of epochs 2 and 3), K trials per pass, each architecture against hard sharing at the
same K. Usage (from the
repository root):

    .venv/bin/python benchmarks/architectures.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from _report import write_section

from mtl_core.architectures import ARCHITECTURES
from mtl_core.batched import can_batch_together, train_batch
from mtl_core.config import TrialConfig
from mtl_core.experiments import DataSplits, Split, get_experiment
from mtl_core.results import TrialResult

logger = logging.getLogger("benchmarks.architectures")

EXPERIMENT = "multi_mnist"
TASKS = ("left", "right")


@dataclass
class Accuracy:
    architecture: str
    results: list[TrialResult]
    seconds: float


def _first_rows(split: Split, rows: int) -> Split:
    return Split(split.x[:rows], [t[:rows] for t in split.targets])


def accuracy(
    architecture: str, seeds: list[int], epochs: int | None, data: DataSplits, device: str
) -> Accuracy:
    configs = [
        TrialConfig(
            experiment=EXPERIMENT,
            architecture=architecture,
            epochs=epochs,
            seed=seed,
            device=device,
        )
        for seed in seeds
    ]
    if not can_batch_together(configs):
        raise SystemExit(f"{architecture}: the seeds cannot share a pass")
    started = time.perf_counter()
    results = train_batch(configs, data=data, progress=True)
    seconds = time.perf_counter() - started
    for seed, result in zip(seeds, results, strict=True):
        logger.info("%s seed %d: test %s", architecture, seed, result.test_metrics)
    return Accuracy(architecture, results, seconds)


def epoch_seconds(architecture: str, k: int, data: DataSplits, device: str) -> float:
    """Seconds of an epoch of K trials in one pass on ``data``: the faster of the second and
    third of three epochs (the first pays for warming up)."""
    configs = [
        TrialConfig(
            experiment=EXPERIMENT,
            architecture=architecture,
            epochs=3,
            seed=seed,
            data_seed=0,
            device=device,
        )
        for seed in range(k)
    ]
    (first, *_) = train_batch(configs, data=data)
    ends = [report.elapsed_s for report in first.history]
    return min(ends[1] - ends[0], ends[2] - ends[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument(
        "--architectures",
        nargs="+",
        default=None,
        help=f"default: every registered one ({', '.join(ARCHITECTURES.names())})",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=None, help="default: the experiment's")
    parser.add_argument("--timing-k", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--timing-samples", type=int, default=4096)
    parser.add_argument("--timing-eval-rows", type=int, default=1000)
    parser.add_argument("--skip-accuracy", action="store_true", help="timing only")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    names = args.architectures or ARCHITECTURES.names()
    unknown = [n for n in names if n not in ARCHITECTURES]
    if unknown:
        parser.error(f"unknown architecture(s) {unknown}; valid: {ARCHITECTURES.names()}")
    if "hard" not in names:
        names = ["hard", *names]  # the reference of the timing ratios
    full = get_experiment(EXPERIMENT).load(args.data_dir)
    rows = args.timing_eval_rows
    # Prepared splits are used as given (max_train_samples applies to loaded ones): cut here.
    small = DataSplits(
        _first_rows(full.train, args.timing_samples),
        _first_rows(full.val, rows),
        _first_rows(full.test, rows),
    )

    timing: dict[tuple[str, int], float] = {}
    for k in args.timing_k:
        for name in names:
            timing[name, k] = epoch_seconds(name, k, small, args.device)
            logger.info("%s K=%d: %.2f s per epoch", name, k, timing[name, k])
    results = (
        []
        if args.skip_accuracy
        else [accuracy(n, args.seeds, args.epochs, full, args.device) for n in names]
    )

    lines = [
        "LeNet trunk (`multi_mnist`'s blocks and heads) under each architecture at its default "
        "hyper-parameters, uniform weights (`fixed`, all 1), Adam lr 0.001, batch 256, device "
        f"`{args.device}`.",
        "",
    ]
    if results:
        epochs = results[0].results[0].config.epochs
        lines += [
            f"**Test accuracy**: all 60,000 training pairs, {epochs} epochs, seeds "
            f"{', '.join(map(str, args.seeds))} (trained side by side in one batched pass per "
            "architecture); mean over the seeds, then each seed.",
            "",
            "| architecture | left | right | per seed (left / right) | wall time (s) |",
            "|---|---|---|---|---|",
        ]
        for row in results:
            means = [sum(r.test_metrics[t] for r in row.results) / len(row.results) for t in TASKS]
            seeds = "; ".join(
                f"{r.test_metrics['left']:.4f} / {r.test_metrics['right']:.4f}" for r in row.results
            )
            lines.append(
                f"| {row.architecture} | {means[0]:.4f} | {means[1]:.4f} | {seeds} "
                f"| {row.seconds:.0f} |"
            )
        lines.append("")
    ks = args.timing_k
    lines += [
        f"**Per-epoch time**: one epoch on {args.timing_samples:,} training pairs with "
        f"validation on {rows:,} (the faster of epochs 2 and 3), K trials per pass; ratio to "
        "`hard` at the same K.",
        "",
        "| architecture | " + " | ".join(f"K = {k}: s per epoch (× hard)" for k in ks) + " |",
        "|---|" + "---|" * len(ks),
    ]
    for name in names:
        cells = [f"{timing[name, k]:.2f} ({timing[name, k] / timing['hard', k]:.2f}×)" for k in ks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if not args.no_write:
        write_section(f"Architectures on MultiMNIST ({args.device})", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
