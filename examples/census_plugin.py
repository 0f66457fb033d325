"""A complete experiment plugin: its own data file, its own loss and metric, two tasks.

``census_sample``: 800 census records, task ``income`` (> 50K, binary) trained with a focal loss
and judged by F2, both registered below, and task ``hours`` (hours worked per week) with the
built-in Huber loss and MAE. Copy this module into your own package (``my_package/census.py``)
and the data file below your data directory; see docs/experiments.md, "A complete plugin".

Data: ``census_sample/census_sample.csv`` below the data directory (``MTLSEARCH_DATA_DIR``);
this repository ships it as ``examples/data/census_sample/census_sample.csv``: the first 800
rows of UCI Adult's ``adult.data`` (Becker & Kohavi 1996, CC BY 4.0), with the columns age,
workclass, education_num, sex, capital_gain, capital_loss, hours_per_week and income.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_core.errors import DataError
from mtl_core.experiments import (
    DataFile,
    DataShapes,
    DataSplits,
    Experiment,
    NetworkParts,
    Split,
    TrainingDefaults,
    register_experiment,
)
from mtl_core.tasks import Task, register_loss, register_metric

CENSUS_CSV = DataFile(
    relative_path="census_sample/census_sample.csv",  # below the data directory
    sha256="4c4d9b74ab0f6b2ab366285cbc09ba3cd72dbaa412e3c54aa26c70376a0300e7",  # sha256sum
    source="examples/data/census_sample/ of the mtlsearch repository (the first 800 rows of UCI "
    "Adult, https://archive.ics.uci.edu/dataset/2/adult)",
)
NUMERIC = ("age", "education_num", "capital_gain", "capital_loss")
CATEGORICAL = ("workclass", "sex")
HIDDEN = 32
FOCAL_GAMMA = 2.0
FOCAL_ALPHA = 0.75


# A loss and a metric of our own, registered when the module is imported, above the experiment
# whose tasks name them. The names are global: the same on the API host and on every worker.


@register_loss("focal")
def focal(pred: Tensor, target: Tensor) -> Tensor:
    """Binary focal loss on logits (Lin et al., "Focal Loss for Dense Object Detection", ICCV
    2017): each sample's BCE, scaled down as the sample gets easy (gamma 2), with weight 0.75 on
    the positives (alpha; one income in four is > 50K) and 0.25 on the negatives.

    ``pred``: one trial's ``[B, 1]`` logits; ``target``: its ``[B]`` 0/1 floats. Returns the
    batch mean, a 0-dimensional tensor. Torch operations only (no ``.item()``, no ``if`` on
    values): with K > 1 trials in a batch it runs under ``torch.func.vmap``.
    """
    logits = pred.squeeze(-1)
    target = target.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_true = torch.exp(-bce)  # the probability the model gives the true class
    alpha = FOCAL_ALPHA * target + (1 - FOCAL_ALPHA) * (1 - target)
    return (alpha * (1 - p_true) ** FOCAL_GAMMA * bce).mean()


@register_metric("f2", higher_is_better=True)
def f2(pred: Tensor, target: Tensor) -> float:
    """F-beta with beta = 2 (recall weighs four times precision); a positive logit means 1.

    ``pred``: the whole split's ``[N, 1]`` logits, ``target``: its ``[N]`` 0/1 floats, both on
    the CPU. It runs outside autograd and vmap: plain Python is fine.
    """
    predicted = pred.reshape(-1) > 0
    actual = target.reshape(-1) > 0.5
    tp = int((predicted & actual).sum())
    fp = int((predicted & ~actual).sum())
    fn = int((~predicted & actual).sum())
    beta2 = 2.0**2
    denominator = (1 + beta2) * tp + beta2 * fn + fp
    return (1 + beta2) * tp / denominator if denominator else 0.0


def _read(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {column: np.array([row[column] for row in rows]) for column in rows[0]}


def _standardise(values: np.ndarray, train: np.ndarray) -> np.ndarray:
    return (values - values[train].mean()) / (values[train].std() or 1.0)


def _inputs(columns: dict[str, np.ndarray], train: np.ndarray) -> np.ndarray:
    """``[N, features]`` float32: the numeric columns standardised with the training rows' mean
    and std (the capital columns on a log scale), the categorical ones one-hot with the
    training rows' vocabulary. The width depends on that vocabulary."""
    features = []
    for name in NUMERIC:
        values = columns[name].astype(np.float64)
        features.append(_standardise(np.log1p(values) if "capital" in name else values, train))
    for name in CATEGORICAL:
        features += [columns[name] == category for category in sorted(set(columns[name][train]))]
    return np.stack(features, axis=1).astype(np.float32)


def _split(x: np.ndarray, income: np.ndarray, hours: np.ndarray, rows: np.ndarray) -> Split:
    # One target per task, in the order of `tasks`, each a tensor of its own.
    targets = [torch.from_numpy(income[rows]), torch.from_numpy(hours[rows])]
    return Split(torch.from_numpy(x[rows]), targets)


@register_experiment
class CensusSample(Experiment):
    """Income > 50K (focal loss, F2) and hours per week (Huber, MAE) from 800 census records.

    Args:
        seed: seed of the 600 / 100 / 100 train / validation / test permutation.
    """

    name: ClassVar[str] = "census_sample"
    description: ClassVar[str] = (
        "800 UCI Adult records: income > 50K (focal loss, F2) and hours per week "
        "(standardised; Huber, MAE); the example plugin of docs/experiments.md."
    )
    tasks: ClassVar[tuple[Task, ...]] = (
        Task("income", "focal", "f2", 1, ("auc",)),
        Task("hours", "huber", "mae", 1),
    )
    files: ClassVar[tuple[DataFile, ...]] = (CENSUS_CSV,)
    defaults: ClassVar[TrainingDefaults] = TrainingDefaults(
        epochs=5, batch_size=64, lr=3e-3, optimizer="adam", architecture="hard"
    )

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def load_splits(self, data_dir: Path | None) -> DataSplits:
        if data_dir is None:  # `load` has checked the files, so this is a direct call
            raise DataError("no data directory set: pass --data-dir or set MTLSEARCH_DATA_DIR")
        columns = _read(data_dir / CENSUS_CSV.relative_path)
        order = np.random.default_rng(self.seed).permutation(len(columns["age"]))
        test, val, train = order[:100], order[100:200], order[200:]
        x = _inputs(columns, train)
        income = (columns["income"] == ">50K").astype(np.float32)
        hours = _standardise(columns["hours_per_week"].astype(np.float64), train)
        hours = hours.astype(np.float32)
        return DataSplits(
            _split(x, income, hours, train),
            _split(x, income, hours, val),
            _split(x, income, hours, test),
        )

    def network_parts(self, data: DataShapes) -> NetworkParts:
        # The first layer is as wide as the loaded inputs: no constant to keep in step.
        def make_blocks() -> list[nn.Module]:  # new modules on every call
            return [
                nn.Sequential(nn.Linear(data.input_dim, HIDDEN), nn.ReLU()),
                nn.Sequential(nn.Linear(HIDDEN, HIDDEN), nn.ReLU()),
            ]

        def make_head(task_index: int) -> nn.Module:
            return nn.Linear(HIDDEN, self.tasks[task_index].output_dim)

        return NetworkParts(
            make_blocks=make_blocks,
            representation_dim=HIDDEN,
            make_head=make_head,
            input_dim=data.input_dim,
            num_tasks=len(self.tasks),
        )
