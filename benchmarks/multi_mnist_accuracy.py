"""MultiMNIST with the LeNet trunk and uniform weights: test accuracy and wall time.

The literature reports roughly 0.85-0.95 per task for LeNet on MultiMNIST (Sener & Koltun,
NeurIPS 2018; Lin et al., NeurIPS 2019). Usage (from the repository root):

    .venv/bin/python benchmarks/multi_mnist_accuracy.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from _report import write_section

from mtl_core import TrialConfig, train_trial

logger = logging.getLogger("benchmarks.multi_mnist_accuracy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--epochs", type=int, default=None, help="default: the experiment's")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    rows = []
    for seed in args.seeds:
        started = time.perf_counter()
        result = train_trial(
            TrialConfig(
                experiment="multi_mnist", epochs=args.epochs, seed=seed, device=args.device
            ),
            args.data_dir,
            progress=True,
        )
        seconds = time.perf_counter() - started
        rows.append((seed, result, seconds))
        logger.info("seed %d: test %s in %.0f s", seed, result.test_metrics, seconds)

    epochs = rows[0][1].config.epochs
    lines = [
        f"Uniform weights (`fixed`, all 1), hard sharing, {epochs} epochs, batch "
        f"{rows[0][1].config.batch_size}, Adam lr {rows[0][1].config.lr}, 60,000 training pairs, "
        "10,000 test pairs (Sener & Koltun's construction: a 36x36 canvas resized to 28x28), "
        f"device `{args.device}`.",
        "",
        "| seed | test accuracy left | test accuracy right | wall time (s) |",
        "|---|---|---|---|",
    ]
    for seed, result, seconds in rows:
        lines.append(
            f"| {seed} | {result.test_metrics['left']:.4f} | {result.test_metrics['right']:.4f} "
            f"| {seconds:.0f} |"
        )
    lines += [
        "",
        "Literature range for LeNet on MultiMNIST: about 0.85-0.95 per task (Sener & Koltun, "
        "NeurIPS 2018; Lin et al., NeurIPS 2019).",
    ]
    if not args.no_write:
        write_section(f"MultiMNIST accuracy ({args.device})", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
