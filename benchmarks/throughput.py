"""Trials per hour: a plain Optuna + PyTorch loop, the worker path, and the batched trainer.

Three ways to run the same search (fixed loss weights sampled by TPE, same experiment, epochs,
batch size and learning rate) in one process:

  (a) plain: the objective a user would write: a torch DataLoader over a TensorDataset on the
      CPU, a fresh model and Adam per trial, one trial at a time;
  (b) worker, one by one: `mtl_core.trainer.train_trial` with the data kept on the device;
  (c) batched: `mtl_core.batched.train_batch` with K trials per pass.

Each path reports trials per hour (per GPU-hour on CUDA), the mean final validation accuracy
of its trials (the paths must land in the same band), peak memory (CUDA allocator peak, or
the process RSS on the CPU) and GPU utilisation (sampled). The table goes to
docs/benchmarks.md under "## Throughput (<device>, <experiment>)". Usage (repository root):

    .venv/bin/python benchmarks/throughput.py --experiment adult --epochs 2 --trials 16 \\
        --batch 16 --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_section

from mtl_core.architectures import build_model
from mtl_core.batched import auto_batch_size, train_batch
from mtl_core.config import TrialConfig
from mtl_core.experiments import DataSplits, Experiment, get_experiment
from mtl_core.results import TrialResult
from mtl_core.tasks import build_loss
from mtl_core.trainer import compute_metrics, prepare_data, resolve_config

logger = logging.getLogger("benchmarks.throughput")

LOG_W_RANGE = (math.log(0.1), math.log(10.0))


def suggest_weights(trial: optuna.Trial, tasks: tuple[str, ...]) -> dict[str, float]:
    """w_ref = 1 for the first task, the others exp(u) with u uniform in [ln 0.1, ln 10]."""
    weights = {tasks[0]: 1.0}
    for task in tasks[1:]:
        weights[task] = math.exp(trial.suggest_float(f"log_w_{task}", *LOG_W_RANGE))
    return weights


def accuracy_of(experiment: Experiment, main: dict[str, float], extra: dict[str, float]) -> float:
    """Mean over tasks of the validation accuracy (main metric or the ``task/accuracy`` extra)."""
    values = []
    for task in experiment.tasks:
        if task.metric == "accuracy":
            values.append(main[task.name])
        elif f"{task.name}/accuracy" in extra:
            values.append(extra[f"{task.name}/accuracy"])
        else:
            values.append(main[task.name])
    return sum(values) / len(values)


def objective_of(main: dict[str, float]) -> float:
    return sum(main.values()) / len(main)


class Sampler:
    """Samples the process RSS and the GPU utilisation in a background thread."""

    def __init__(self, device: torch.device, every_s: float = 0.25) -> None:
        self.device = device
        self.every_s = every_s
        self.peak_rss = 0
        self.util: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def rss() -> int:
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _gpu_util(self) -> float | None:
        try:
            return float(torch.cuda.utilization(self.device))
        except Exception:
            pass
        try:
            index = self.device.index or 0
            out = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=utilization.gpu",
                    "--format=csv,noheader,nounits",
                    f"--id={index}",
                ],
                capture_output=True,
                text=True,
                timeout=2,
                check=True,
            )
            return float(out.stdout.strip().splitlines()[0])
        except Exception:
            return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self.rss())
            if self.device.type == "cuda":
                value = self._gpu_util()
                if value is not None:
                    self.util.append(value)
            self._stop.wait(self.every_s)

    def __enter__(self) -> Sampler:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._stop.set()
        self._thread.join()

    def peak_memory(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        return self.peak_rss


@dataclass
class PathResult:
    name: str
    trials: int
    batch: int
    wall_s: float
    accuracies: list[float] = field(default_factory=list)
    peak_memory: int = 0
    gpu_util: float | None = None

    @property
    def per_hour(self) -> float:
        return self.trials / self.wall_s * 3600


@dataclass
class Setup:
    experiment: Experiment
    epochs: int
    batch_size: int
    lr: float
    device: torch.device
    data: DataSplits
    max_train_samples: int | None


def _study(seed: int) -> optuna.Study:
    return optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))


def run_plain(setup: Setup, n_trials: int) -> PathResult:
    """(a) The plain Optuna objective: DataLoader on the CPU, a fresh model per trial."""
    exp = setup.experiment
    cpu = setup.data.train  # a user's tensors live on the CPU
    train = TensorDataset(cpu.x.cpu(), *[t.cpu() for t in cpu.targets])
    val_x = setup.data.val.x.cpu()
    losses = [build_loss(task.loss) for task in exp.tasks]
    accuracies: list[float] = []

    def objective(trial: optuna.Trial) -> float:
        weights = suggest_weights(trial, exp.task_names)
        torch.manual_seed(trial.number)
        model = build_model(exp.defaults.architecture, {}, exp.parts_for(setup.data))
        model = model.to(setup.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=setup.lr)
        loader = DataLoader(train, batch_size=setup.batch_size, shuffle=True)
        w = [weights[t] for t in exp.task_names]
        for _ in range(setup.epochs):
            model.train()
            for x, *targets in loader:
                x = x.to(setup.device)
                out = model(x).outputs
                loss = sum(
                    wt * fn(o, t.to(setup.device))
                    for wt, fn, o, t in zip(w, losses, out, targets, strict=True)
                )
                optimizer.zero_grad()
                loss.backward()  # type: ignore[union-attr]
                optimizer.step()
        model.eval()
        with torch.no_grad():
            outs = [
                model(val_x[i : i + 4096].to(setup.device)).outputs
                for i in range(0, len(val_x), 4096)
            ]
        outputs = [torch.cat([o[t] for o in outs]) for t in range(len(exp.tasks))]
        main, extra = compute_metrics(exp, outputs, setup.data.val.targets)
        accuracies.append(accuracy_of(exp, main, extra))
        return objective_of(main)

    study = _study(0)
    with Sampler(setup.device) as sampler:
        started = time.perf_counter()
        study.optimize(objective, n_trials=n_trials)
        wall = time.perf_counter() - started
    return _finish("(a) plain Optuna + DataLoader", n_trials, 1, wall, accuracies, sampler)


def _config(
    setup: Setup, weights: dict[str, float], seed: int, data_seed: int | None
) -> TrialConfig:
    return TrialConfig(
        experiment=setup.experiment.name,
        weights=weights,
        seed=seed,
        data_seed=data_seed,
        epochs=setup.epochs,
        batch_size=setup.batch_size,
        lr=setup.lr,
        device=str(setup.device),
        max_train_samples=setup.max_train_samples,
    )


def _tell(
    study: optuna.Study,
    trial: optuna.Trial,
    result: TrialResult,
    setup: Setup,
    accuracies: list[float],
) -> None:
    last = result.history[-1]
    accuracies.append(accuracy_of(setup.experiment, last.val_metrics, last.val_extra))
    study.tell(trial, objective_of(last.val_metrics))


def run_worker(setup: Setup, n_trials: int) -> PathResult:
    """(b) The worker path one by one: train_trial with the data on the device."""
    study = _study(0)
    accuracies: list[float] = []
    with Sampler(setup.device) as sampler:
        started = time.perf_counter()
        for _ in range(n_trials):
            trial = study.ask()
            weights = suggest_weights(trial, setup.experiment.task_names)
            config = _config(setup, weights, trial.number, None)
            from mtl_core.trainer import train_trial

            _tell(study, trial, train_trial(config, data=setup.data), setup, accuracies)
        wall = time.perf_counter() - started
    return _finish("(b) worker, one by one", n_trials, 1, wall, accuracies, sampler)


def run_batched(
    setup: Setup, n_trials: int, k: int, precision: str, compile_step: bool
) -> PathResult:
    """(c) Batched: K trials asked together and trained in one pass."""
    study = _study(0)
    accuracies: list[float] = []
    with Sampler(setup.device) as sampler:
        started = time.perf_counter()
        done = 0
        group = 0
        while done < n_trials:
            size = min(k, n_trials - done)
            trials = [study.ask() for _ in range(size)]
            configs = [
                _config(setup, suggest_weights(t, setup.experiment.task_names), t.number, group)
                for t in trials
            ]
            results = train_batch(
                configs,
                data=setup.data,
                precision=precision,  # type: ignore[arg-type]
                compile=compile_step,
            )
            for trial, result in zip(trials, results, strict=True):
                _tell(study, trial, result, setup, accuracies)
            done += size
            group += 1
        wall = time.perf_counter() - started
    label = f"(c) batched, K={k}" + (f", {precision}" if precision != "fp32" else "")
    return _finish(label, n_trials, k, wall, accuracies, sampler)


def _finish(
    name: str, trials: int, batch: int, wall: float, accuracies: list[float], sampler: Sampler
) -> PathResult:
    util = statistics.mean(sampler.util) if sampler.util else None
    result = PathResult(name, trials, batch, wall, accuracies, sampler.peak_memory(), util)
    logger.info("%s: %d trials in %.1f s (%.0f/h)", name, trials, wall, result.per_hour)
    return result


def table(results: list[PathResult], device: torch.device) -> str:
    unit = "GPU-hour" if device.type == "cuda" else "hour"
    memory = "peak CUDA memory" if device.type == "cuda" else "peak RSS"
    lines = [
        f"| path | trials | wall (s) | trials / {unit} | vs (a) | mean val accuracy "
        f"(± sd) | {memory} | GPU util |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = results[0].per_hour if results and results[0].name.startswith("(a)") else None
    for r in results:
        acc = statistics.mean(r.accuracies) if r.accuracies else float("nan")
        sd = statistics.stdev(r.accuracies) if len(r.accuracies) > 1 else 0.0
        speed = f"{r.per_hour / base:.1f}x" if base else "-"
        util = f"{r.gpu_util:.0f} %" if r.gpu_util is not None else "n/a"
        lines.append(
            f"| {r.name} | {r.trials} | {r.wall_s:.1f} | {r.per_hour:,.0f} | {speed} | "
            f"{acc:.4f} ± {sd:.4f} | {r.peak_memory / 2**20:,.0f} MiB | {util} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", choices=["multi_mnist", "adult"], default="adult")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--batch", default="16", help="K trials per pass, or 'auto'")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-train-samples", type=int, default=None)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16", "both"],
        default="fp32",
        help="of path (c); 'both' runs it in fp32 and in bf16 (to see bf16's accuracy cost)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the batched step")
    parser.add_argument("--paths", default="abc", help="which paths to run, e.g. 'ac'")
    parser.add_argument(
        "--plain-trials",
        type=int,
        default=None,
        help="trials of paths (a) and (b) (default --trials); rates compare",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of all paths; the fastest of each is kept"
    )
    parser.add_argument("--note", default="", help="a line of context added under the table")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    device = torch.device(args.device)
    experiment = get_experiment(args.experiment)
    probe = TrialConfig(
        experiment=args.experiment,
        epochs=args.epochs,
        device=str(device),
        max_train_samples=args.max_train_samples,
    )
    resolved = resolve_config(probe, experiment)
    data = prepare_data(experiment, args.data_dir, device, args.max_train_samples)
    setup = Setup(
        experiment,
        resolved.epochs,
        resolved.batch_size,
        resolved.lr,
        device,
        data,
        args.max_train_samples,
    )
    if args.batch == "auto":
        k = min(auto_batch_size(experiment, probe, device, data=data), args.trials)
        logger.info("--batch auto: K=%d", k)
    else:
        k = int(args.batch)
    slow_trials = args.plain_trials or args.trials

    runs: list[Callable[[], PathResult]] = []
    if "a" in args.paths:
        runs.append(lambda: run_plain(setup, slow_trials))
    if "b" in args.paths:
        runs.append(lambda: run_worker(setup, slow_trials))
    if "c" in args.paths:
        precisions = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
        for precision in precisions:
            runs.append(
                lambda p=precision: run_batched(setup, args.trials, k, p, args.compile)  # type: ignore[misc]
            )
    # Interleaved rounds, fastest of each path kept: other processes on a shared machine
    # slow down whichever path happens to run beside them.
    rounds = [[run() for run in runs] for _ in range(args.repeat)]
    results = [min(column, key=lambda r: r.wall_s) for column in zip(*rounds, strict=True)]
    body = (
        f"{args.experiment}: {setup.epochs} epochs, batch size {setup.batch_size}, "
        f"{len(data.train)} training samples, Adam lr {setup.lr}, fixed weights sampled by "
        f"TPE; device {device}; fastest of {args.repeat} interleaved round(s) per path.\n\n"
        + table(results, device)
    )
    if args.note:
        body += f"\n\n{args.note}"
    print(body)
    if not args.no_write:
        write_section(f"Throughput ({device}, {args.experiment})", body)


if __name__ == "__main__":
    main()
