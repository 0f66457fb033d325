"""Command line and sizes of benchmarks/search_quality.py: the presets (CPU default, --quick,
--full) and each experiment's weight range."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _quality_train import Sizes

REPO_ROOT = Path(__file__).resolve().parents[1]

EXPERIMENTS = ("multi_mnist", "adult", "adult_mixed")
#: The second task's weight range (grid and studies alike); mixed scales need a wide one.
WEIGHT_RANGES = {"multi_mnist": (0.05, 20.0), "adult": (0.05, 20.0), "adult_mixed": (1e-5, 10.0)}
#: The default CPU configuration's epochs and training samples, per experiment. A MultiMNIST
#: trial-epoch costs about 2 s on a CPU whatever the training size (LeNet on the 10,000
#: validation images dominates), an Adult one about 0.1 s.
CPU_SIZES = {"multi_mnist": (3, 1000), "adult": (8, 8000), "adult_mixed": (8, 8000)}
PRESETS: dict[str, dict[str, object]] = {
    "cpu": {
        "seeds": 3,
        "grid_points": 21,
        "study_seeds": 3,
        "batches": [1, 32],
        "confirm_top": 3,
        "confirm_seeds": 3,
    },
    "quick": {
        "epochs": 3,
        "seeds": 2,
        "grid_points": 5,
        "study_seeds": 1,
        "batches": [1, 32],
        "max_train_samples": 512,
        "n_trials": 4,
        "confirm_top": 2,
        "confirm_seeds": 2,
    },
    "full": {
        "epochs": 10,
        "seeds": 5,
        "grid_points": 41,
        "study_seeds": 5,
        "batches": [1, 32],
        "max_train_samples": 0,
        "confirm_top": 3,
        "confirm_seeds": 5,
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Does the search pay? Trains single-task baselines, every registered strategy at "
            "its defaults, a dense log grid over the fixed weights, and the service's own "
            "studies (over REST, real server and workers), then writes tables, a plain "
            "reading and plots. Default sizes took about 2 h 20 min on 2 shared CPU cores "
            "(MultiMNIST 3 epochs on 1,000 training samples, Adult 8 epochs on 8,000; 3 "
            "seeds; 21 grid points; 3 study seeds of 12 trials, each study's top 3 and uniform "
            "weights confirmed at 3 further seeds); --quick is a smoke run of a few minutes; "
            "--full is the GPU configuration (all training samples, 10 epochs, 5 seeds, 41 "
            "grid points, 5 study seeds of 41 trials, confirmed at 5 seeds)."
        ),
    )
    parser.add_argument(
        "--experiments",
        nargs="+",
        default=list(EXPERIMENTS),
        help="experiments to run, two tasks each (default: multi_mnist adult adult_mixed)",
    )
    parser.add_argument(
        "--seeds", type=int, help="training seeds per configuration (preset: 3; quick 2; full 5)"
    )
    parser.add_argument(
        "--grid-points",
        type=int,
        help="points of the weight-ratio log grid (preset: 21; quick 5; full 41)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        help="epochs of every trial (preset: MultiMNIST 3, Adult 8; quick 3; full 10)",
    )
    parser.add_argument(
        "--max-train-samples",
        type=int,
        help="training samples of every "
        "trial; 0 = all (preset: 1,000 MultiMNIST, 8,000 Adult; quick 512; "
        "full all)",
    )
    parser.add_argument("--study-seeds", type=int, help="seeds of each study kind (preset: 3)")
    parser.add_argument(
        "--n-trials",
        type=int,
        help="trials per study (default: a fifth of the grid's trials, grid points x seeds / 5)",
    )
    parser.add_argument(
        "--batches", type=int, nargs="+", help="the workers' --batch K values (preset: 1 32)"
    )
    parser.add_argument(
        "--confirm-top",
        type=int,
        help="configurations each study confirms after its search (preset: 3; quick 2)",
    )
    parser.add_argument(
        "--confirm-seeds",
        type=int,
        help="further seeds of each confirmed configuration and of uniform weights, >= 2 "
        "(preset: 3; quick 2; full 5)",
    )
    parser.add_argument("--no-studies", action="store_true", help="skip the REST studies")
    parser.add_argument(
        "--sampler",
        choices=["tpe", "tpe_batch"],
        default="tpe",
        help="the studies' sampler (default tpe; tpe_batch: TPE fitted once per batch of asks, "
        "which at K = 1 is tpe, so its K=32 rows against its K=1 rows measure the batching)",
    )
    parser.add_argument(
        "--spaces",
        nargs="+",
        choices=["weights", "weights+strategy", "multi", "population"],
        default=["weights", "weights+strategy", "multi", "population"],
        help="the study kinds' search spaces (default all; multi on adult_mixed only; "
        "population: PBT over the weights, the whole budget as one population)",
    )
    parser.add_argument(
        "--pruners",
        nargs="+",
        choices=["none", "median"],
        default=["none", "median"],
        help="the study kinds' pruners (default both)",
    )
    parser.add_argument(
        "--device", default="cpu", help="where to train: cpu (default), cuda, cuda:0, ..."
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=REPO_ROOT.parent / "shared" / "data",
        help="the data sets (default: ../shared/data beside the checkout)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="the report (default: docs/search-quality.md; "
        "with --quick, a file in the temporary directory)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: tiny sizes, one study seed; its report is not for committing",
    )
    mode.add_argument("--full", action="store_true", help="the full-size (GPU) configuration")
    args = parser.parse_args(argv)
    preset = PRESETS["quick" if args.quick else "full" if args.full else "cpu"]
    for key, value in preset.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.out is None:
        args.out = (
            Path(tempfile.gettempdir()) / "search-quality-quick.md"
            if args.quick
            else REPO_ROOT / "docs" / "search-quality.md"
        )
    if args.seeds < 1 or args.grid_points < 2 or args.study_seeds < 1:
        parser.error("--seeds and --study-seeds must be >= 1, --grid-points >= 2")
    if args.confirm_top < 1 or args.confirm_seeds < 2:
        parser.error("--confirm-top must be >= 1 and --confirm-seeds >= 2 (a spread)")
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be >= 1")
    if not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir} is not a directory")
    # Absolute: the workers run in a temporary directory of their own.
    args.data_dir = args.data_dir.resolve()
    return args


def sizes_for(experiment: str, args: argparse.Namespace) -> Sizes:
    cpu_epochs, cpu_samples = CPU_SIZES[experiment]
    if args.max_train_samples is None:
        max_train: int | None = cpu_samples
    else:
        max_train = args.max_train_samples or None
    return Sizes(
        epochs=args.epochs or cpu_epochs,
        max_train_samples=max_train,
        seeds=args.seeds,
        grid_points=args.grid_points,
        weight_range=WEIGHT_RANGES[experiment],
        device=args.device,
    )
