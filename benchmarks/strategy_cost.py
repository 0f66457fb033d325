"""What a weighting strategy costs per training step, relative to `fixed`.

Every registered strategy (`mtl_core.weighting.list_strategies()`, so a new one joins by being
registered) is trained with `mtl_core.batched.train_batch` at its default hyper-parameters, K
trials at a time, on each experiment's default architecture, batch size and optimizer.

*Per-step time.* Each measurement trains twice for two epochs, once with a training set of
``--steps LOW`` batches and once with ``--steps HIGH`` batches, and times the second epoch of
each (the first warms up: allocations, kernel choices). An epoch is its steps plus what does not
depend on their number (one validation pass, one host transfer of the epoch's flags), so

    ms per step = (epoch at HIGH steps - epoch at LOW steps) / (HIGH - LOW)

and the fixed cost cancels. The validation and test splits are cut to one batch: they are not
what is measured. ``vs fixed`` is the ratio to `fixed` at the same experiment and K, taken
within each repeat (the two ran minutes apart at most) and then the median over repeats;
``ms / step`` is the median over repeats.

A strategy that cannot train on an experiment (its architecture, K > 1, a diverged step, CUDA
out of memory at that K) gets a row saying why; the others go on. The table goes to
docs/benchmarks.md under "## Strategy cost (<device>)". Usage (repository root):

    .venv/bin/python benchmarks/strategy_cost.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import BENCHMARKS_MD, write_section

from mtl_core.architectures import make_architecture
from mtl_core.batched import DIVERGED, batchable, train_batch
from mtl_core.config import TrialConfig
from mtl_core.experiments import DataSplits, Experiment, Split, get_experiment
from mtl_core.results import EpochReport
from mtl_core.trainer import prepare_data, resolve_config
from mtl_core.weighting import STRATEGIES, list_strategies

logger = logging.getLogger("benchmarks.strategy_cost")

BASELINE = "fixed"


class CannotTrain(Exception):
    """The strategy does not train in this setting; the message is the table's reason."""


@dataclass
class Cell:
    """One (experiment, K, strategy): its per-step times over repeats, or why it did not run."""

    experiment: str
    k: int
    strategy: str
    step_ms: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    reason: str | None = None

    @property
    def ms(self) -> float | None:
        return statistics.median(self.step_ms) if self.step_ms else None

    @property
    def ratio(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None


@dataclass
class Setup:
    """One experiment's data (loaded once) and the settings shared by its trials."""

    experiment: Experiment
    architecture: str
    batch_size: int
    device: torch.device
    data: DataSplits

    def cut(self, steps: int) -> DataSplits:
        """``steps`` training batches; validation and test cut to one batch."""
        n = steps * self.batch_size
        if n > len(self.data.train):
            raise ValueError(
                f"{self.experiment.name} has {len(self.data.train)} training samples, "
                f"{steps} steps of {self.batch_size} need {n}"
            )
        size = self.batch_size
        return DataSplits(
            _head(self.data.train, n), _head(self.data.val, size), _head(self.data.test, size)
        )


def _head(split: Split, n: int) -> Split:
    return Split(split.x[:n], [t[:n] for t in split.targets])


def configs_for(setup: Setup, strategy: str, k: int, steps: int) -> list[TrialConfig]:
    return [
        TrialConfig(
            experiment=setup.experiment.name,
            strategy=strategy,
            architecture=setup.architecture,
            seed=seed,
            data_seed=0,
            epochs=2,
            device=str(setup.device),
            max_train_samples=steps * setup.batch_size,
        )
        for seed in range(k)
    ]


def check_trainable(setup: Setup, strategy: str, k: int) -> None:
    """Raise `CannotTrain` when the strategy cannot run here, before training anything."""
    architecture = make_architecture(setup.architecture, {})
    if STRATEGIES.get(strategy).needs_shared_parameters and not architecture.shares_parameters():
        raise CannotTrain(
            f"needs shared parameters; architecture {setup.architecture!r} shares none"
        )
    config = configs_for(setup, strategy, 1, 1)[0]
    if k > 1 and not batchable(config):
        raise CannotTrain(f"has no batched form on {setup.experiment.name} (K > 1)")


def second_epoch_s(setup: Setup, strategy: str, k: int, steps: int) -> float:
    """Seconds of the second epoch of K trials trained on ``steps`` batches per epoch."""
    stamps: dict[int, float] = {}

    def on_epoch(_index: int, report: EpochReport) -> None:
        # The epoch's reports come together after its one host transfer: the first is its end.
        stamps.setdefault(report.epoch, time.perf_counter())

    results = train_batch(
        configs_for(setup, strategy, k, steps), data=setup.cut(steps), on_epoch=on_epoch
    )
    diverged = [r.stop_reason for r in results if (r.stop_reason or "").startswith(DIVERGED)]
    if diverged:
        reason = (diverged[0] or "").removeprefix(DIVERGED)
        raise CannotTrain(f"diverged in {len(diverged)} of {k} trials ({reason})")
    if any(r.num_slots != k for r in results):
        raise CannotTrain(f"out of CUDA memory at K={k} (trained as K={results[0].num_slots})")
    if 1 not in stamps or 2 not in stamps:
        raise CannotTrain("no second epoch was reported")
    return stamps[2] - stamps[1]


def step_ms(setup: Setup, strategy: str, k: int, steps: tuple[int, int]) -> float:
    low, high = steps
    t_low = second_epoch_s(setup, strategy, k, low)
    t_high = second_epoch_s(setup, strategy, k, high)
    return (t_high - t_low) / (high - low) * 1000


def _reason(exc: BaseException) -> str:
    if isinstance(exc, CannotTrain):
        return str(exc)
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= 160 else text[:157] + "..."


def measure_one(setup: Setup, strategy: str, k: int, steps: tuple[int, int]) -> float | str:
    """ms per step, or the reason the strategy cannot train here (never raises)."""
    try:
        check_trainable(setup, strategy, k)
        return step_ms(setup, strategy, k, steps)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return f"out of CUDA memory at K={k}"
    except Exception as exc:  # a strategy's failure is a row, not a crash
        return _reason(exc)


def measure(
    setups: Sequence[Setup],
    strategies: Sequence[str],
    ks: Sequence[int],
    steps: tuple[int, int],
    repeat: int,
) -> list[Cell]:
    """Every (experiment, K, strategy), ``repeat`` interleaved rounds; ratios within a round."""
    cells = {
        (s.experiment.name, k, name): Cell(s.experiment.name, k, name)
        for s in setups
        for k in ks
        for name in strategies
    }
    total = len(cells) * repeat
    done = 0
    for round_ in range(1, repeat + 1):
        for setup, k in [(s, k) for s in setups for k in ks]:
            this_round: dict[str, float] = {}
            for name in strategies:
                cell = cells[(setup.experiment.name, k, name)]
                done += 1
                if cell.reason is not None:  # it failed in an earlier round
                    continue
                started = time.perf_counter()
                outcome = measure_one(setup, name, k, steps)
                where = f"[{done}/{total}] round {round_}, {setup.experiment.name} K={k} {name}"
                if isinstance(outcome, str):
                    cell.reason = outcome
                    logger.info("%s: not run (%s)", where, outcome)
                    continue
                cell.step_ms.append(outcome)
                this_round[name] = outcome
                logger.info(
                    "%s: %.3f ms/step (measured in %.2f s)",
                    where,
                    outcome,
                    time.perf_counter() - started,
                )
            base = this_round.get(BASELINE)
            if base is not None and base > 0:
                for name, value in this_round.items():
                    cells[(setup.experiment.name, k, name)].ratios.append(value / base)
    return list(cells.values())


def table(cells: Sequence[Cell]) -> str:
    lines = [
        "| experiment | K | strategy | ms / step | ms / step / trial | vs fixed | note |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for c in cells:
        if c.reason is not None:
            note = "not run: " + c.reason.replace("|", "\\|")
            lines.append(f"| {c.experiment} | {c.k} | {c.strategy} | — | — | — | {note} |")
            continue
        ms = c.ms
        assert ms is not None
        ratio = f"{c.ratio:.2f}x" if c.ratio is not None else "—"
        note = "below the timing noise" if ms <= 0 else ""
        per_step = STRATEGIES.get(c.strategy).batches_per_step
        if per_step > 1:
            # Its steps read several batches: the same data costs what the row says.
            note = "; ".join(
                filter(
                    None,
                    [
                        f"{per_step} batches per step: time per batch (a step costs {per_step}x)",
                        note,
                    ],
                )
            )
        lines.append(
            f"| {c.experiment} | {c.k} | {c.strategy} | {ms:.3f} | {ms / c.k:.4f} | "
            f"{ratio} | {note} |"
        )
    return "\n".join(lines)


def load_setup(name: str, architecture: str | None, data_dir: Path, device: torch.device) -> Setup:
    experiment = get_experiment(name)
    resolved = resolve_config(
        TrialConfig(experiment=name, architecture=architecture, device=str(device)), experiment
    )
    logger.info("loading %s from %s", name, data_dir)
    data = prepare_data(experiment, data_dir, device)
    return Setup(experiment, resolved.architecture, resolved.batch_size, device, data)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Per-step training time of every registered weighting strategy (default "
        "hyper-parameters, each experiment's default architecture), in ms and relative to "
        "`fixed`, at each K. A step's time is (second epoch at HIGH steps - second epoch at "
        "LOW steps) / (HIGH - LOW): the fixed cost of an epoch cancels. A strategy that cannot "
        "train in a setting gets a row with the reason. Writes the section 'Strategy cost "
        "(<device>)' of docs/benchmarks.md.",
    )
    parser.add_argument(
        "--experiments",
        nargs="+",
        default=["adult", "multi_mnist"],
        help="experiments to run (default: adult multi_mnist)",
    )
    parser.add_argument(
        "--ks", nargs="+", type=int, default=[1, 64], help="trials per pass, K (default: 1 64)"
    )
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=None,
        help=f"strategies to time (default: every registered one: {', '.join(list_strategies())}"
        f"); '{BASELINE}' is always added, it is what the others are compared with",
    )
    parser.add_argument(
        "--steps",
        nargs=2,
        type=int,
        default=[3, 9],
        metavar=("LOW", "HIGH"),
        help="training batches per epoch of the two runs whose second epochs are subtracted "
        "(default: 3 9)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="interleaved rounds; the median of each figure is reported (default: 3)",
    )
    parser.add_argument(
        "--architecture",
        default=None,
        help="architecture of every trial (default: each experiment's own)",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="(default: cpu)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where mnist/ and uci-adult/ are (default: the data_dir setting, MTLSEARCH_DATA_DIR)",
    )
    parser.add_argument("--note", default="", help="a line of context added under the table")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--docs",
        type=Path,
        default=BENCHMARKS_MD,
        help="the file whose section is written (default: docs/benchmarks.md)",
    )
    args = parser.parse_args(argv)
    low, high = args.steps
    if not 1 <= low < high:
        parser.error(f"--steps needs 1 <= LOW < HIGH, got {low} {high}")
    if args.repeat < 1 or any(k < 1 for k in args.ks):
        parser.error(f"--repeat and --ks must be >= 1, got {args.repeat} and {args.ks}")
    known = list_strategies()
    unknown = [s for s in args.strategies or [] if s not in known]
    if unknown:
        parser.error(f"unknown strategies {unknown}; valid: {', '.join(known)}")
    args.strategies = [BASELINE] + [s for s in args.strategies or known if s != BASELINE]
    if args.data_dir is None:
        from mtlsearch.settings import Settings

        args.data_dir = Settings().data_dir
        if args.data_dir is None:
            parser.error("--data-dir is needed: the data_dir setting (MTLSEARCH_DATA_DIR) is unset")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    started = time.perf_counter()
    setups = [load_setup(n, args.architecture, args.data_dir, device) for n in args.experiments]
    low, high = args.steps
    cells = measure(setups, args.strategies, args.ks, (low, high), args.repeat)
    wall = time.perf_counter() - started
    described = "; ".join(
        f"{s.experiment.name}: architecture {s.architecture}, batch size {s.batch_size}"
        for s in setups
    )
    body = (
        f"Per-step training time of each strategy at its default hyper-parameters, K trials per "
        f"pass (`train_batch`), device {device}, {torch.get_num_threads()} CPU threads. "
        f"{described}. A step's time is the second epoch at {high} steps minus the second epoch "
        f"at {low} steps, over {high - low}; median of {args.repeat} interleaved round(s); "
        f"'vs fixed' is the median of the per-round ratios to `fixed` at the same experiment "
        f"and K. Total wall time {wall:.0f} s.\n\n" + table(cells)
    )
    if args.note:
        body += f"\n\n{args.note}"
    print(body)
    if not args.no_write:
        write_section(f"Strategy cost ({device.type})", body, args.docs)


if __name__ == "__main__":
    main()
