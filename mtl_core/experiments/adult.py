"""UCI Adult with two binary tasks: income > 50K and never married (MMoE's group-1 tasks).

Becker & Kohavi, "Adult", UCI Machine Learning Repository, 1996; the task pair follows Ma et
al., "Modeling Task Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts",
KDD 2018 (group 1 of their census-income benchmark).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from mtl_core.architectures import NetworkParts
from mtl_core.errors import DataError
from mtl_core.experiments._base import (
    DataFile,
    DataShapes,
    DataSplits,
    Experiment,
    Split,
    TrainingDefaults,
)
from mtl_core.experiments._registry import register_experiment
from mtl_core.experiments.data import cache_key, read_csv_rows
from mtl_core.tasks import Task

logger = logging.getLogger(__name__)

_SOURCE = (
    'UCI Machine Learning Repository, "Adult" (Becker & Kohavi 1996), '
    "https://archive.ics.uci.edu/dataset/2/adult"
)
ADULT_DATA = DataFile(
    "uci-adult/adult.data",
    "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
    _SOURCE,
)
ADULT_TEST = DataFile(
    "uci-adult/adult.test",
    "0543912af15c52ba12336b042c8f9f96541d6134d9b3d48dba647281fb2b39d1",
    _SOURCE,
)

COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
)
NUMERIC = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")
# marital-status is left out on purpose: "never_married" is predicted from it.
CATEGORICAL = (
    "workclass",
    "education",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native-country",
)
_COL = {name: i for i, name in enumerate(COLUMNS)}


class Encoder:
    """One-hot + standardisation fitted on the training file.

    Categorical columns get the vocabulary of the training file in sorted order ('?', a
    missing value, is a category of its own); an unseen category encodes as all zeros. Numeric
    columns are standardised with the training file's mean and (population) std.
    """

    def __init__(self, rows: list[list[str]]) -> None:
        self.vocab = {col: sorted({row[_COL[col]] for row in rows}) for col in CATEGORICAL}
        numeric = self._numeric(rows)
        self.mean = numeric.mean(axis=0)
        std = numeric.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)

    @property
    def feature_names(self) -> list[str]:
        names = list(NUMERIC)
        for col in CATEGORICAL:
            names.extend(f"{col}={value}" for value in self.vocab[col])
        return names

    @staticmethod
    def _numeric(rows: list[list[str]]) -> np.ndarray:
        try:
            return np.array([[float(row[_COL[c]]) for c in NUMERIC] for row in rows])
        except ValueError as exc:
            raise DataError(f"Adult: a numeric column holds a non-number: {exc}") from None

    def transform(self, rows: list[list[str]]) -> np.ndarray:
        numeric = (self._numeric(rows) - self.mean) / self.std
        blocks = [numeric.astype(np.float32)]
        for col in CATEGORICAL:
            index = {value: i for i, value in enumerate(self.vocab[col])}
            codes = np.array([index.get(row[_COL[col]], -1) for row in rows], dtype=np.int64)
            onehot = np.zeros((len(rows), len(index)), dtype=np.float32)
            seen = codes >= 0
            onehot[np.flatnonzero(seen), codes[seen]] = 1.0
            blocks.append(onehot)
        return np.concatenate(blocks, axis=1)


def _labels(rows: list[list[str]], path: Path) -> tuple[np.ndarray, np.ndarray]:
    income_values = [row[_COL["income"]].rstrip(".") for row in rows]
    unknown = set(income_values) - {">50K", "<=50K"}
    if unknown:
        raise DataError(f"{path} has income labels {sorted(unknown)}, expected '>50K' / '<=50K'")
    income = np.array([v == ">50K" for v in income_values], dtype=np.float32)
    never = np.array([row[_COL["marital-status"]] == "Never-married" for row in rows])
    return income, never.astype(np.float32)


_Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]  # inputs and the two tasks' targets
#: Encodes parsed rows of one file (named for errors) with the training file's encoder.
RowEncoding = Callable[[Encoder, list[list[str]], Path], _Arrays]


def build_splits(
    root: str, val_fraction: float, seed: int, encode: RowEncoding, name: str
) -> tuple[_Arrays, _Arrays, _Arrays]:
    """Train / validation / test arrays of the Adult files under ``root``, encoded by
    ``encode``: the validation rows are a seeded random ``val_fraction`` of adult.data (the
    same rows for every encoding at the same seed), the test rows adult.test."""
    data_dir = Path(root)
    data_path = data_dir / ADULT_DATA.relative_path
    test_path = data_dir / ADULT_TEST.relative_path
    train_rows = read_csv_rows(data_path, len(COLUMNS))
    # adult.test's first line is not data (UCI's "|1x3 Cross validator", or a header here).
    test_rows = read_csv_rows(test_path, len(COLUMNS), skip_lines=1)
    encoder = Encoder(train_rows)
    train_all = encode(encoder, train_rows, data_path)
    order = np.random.default_rng(seed).permutation(len(train_rows))
    n_val = round(len(train_rows) * val_fraction)
    val_idx, train_idx = order[:n_val], order[n_val:]
    test = encode(encoder, test_rows, test_path)
    logger.info(
        "parsed %s: %d train, %d val, %d test rows, %d features",
        name,
        len(train_idx),
        len(val_idx),
        len(test_rows),
        train_all[0].shape[1],
    )
    x, y1, y2 = train_all
    return (
        (x[train_idx], y1[train_idx], y2[train_idx]),
        (x[val_idx], y1[val_idx], y2[val_idx]),
        test,
    )


def _encode(encoder: Encoder, rows: list[list[str]], path: Path) -> _Arrays:
    return (encoder.transform(rows), *_labels(rows, path))


@functools.lru_cache(maxsize=4)
def _build(root: str, val_fraction: float, seed: int) -> tuple[_Arrays, _Arrays, _Arrays]:
    return build_splits(root, val_fraction, seed, _encode, "Adult")


@functools.lru_cache(maxsize=4)
def _feature_names(root: str) -> tuple[str, ...]:
    rows = read_csv_rows(Path(root) / ADULT_DATA.relative_path, len(COLUMNS))
    return tuple(Encoder(rows).feature_names)


def _split(arrays: _Arrays) -> Split:
    x, income, never = arrays
    return Split(torch.from_numpy(x), [torch.from_numpy(income), torch.from_numpy(never)])


def _binary_head(task_index: int) -> nn.Module:
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1))


@register_experiment
class Adult(Experiment):
    """UCI Adult, tasks "income" (> 50K) and "never_married" (marital status), both binary.

    Becker & Kohavi 1996; the task pair of MMoE (Ma et al., KDD 2018), group 1. Inputs: six
    numeric columns standardised with the training file's mean/std (fnlwgt included) and seven
    categorical columns one-hot encoded with the training file's vocabulary; marital-status is
    not an input. Train / validation: a fixed-seed split of ``adult.data``; test: ``adult.test``.
    Targets are float 0/1 of shape ``[N]`` for ``bce_with_logits`` on a one-unit head.

    The parsed arrays are cached in this process and shared between calls: treat the tensors
    of the returned splits as read-only.

    Args:
        val_fraction: share of ``adult.data`` held out for validation (default 0.1).
        seed: seed of the train / validation permutation.
    """

    name: ClassVar[str] = "adult"
    description: ClassVar[str] = (
        "UCI Adult (Becker & Kohavi 1996) with MMoE's group-1 tasks: income > 50K and "
        "never married (binary, AUC); MLP trunk."
    )
    tasks: ClassVar[tuple[Task, ...]] = (
        Task("income", "bce_with_logits", "auc", 1, ("accuracy",)),
        Task("never_married", "bce_with_logits", "auc", 1, ("accuracy",)),
    )
    files: ClassVar[tuple[DataFile, ...]] = (ADULT_DATA, ADULT_TEST)
    defaults: ClassVar[TrainingDefaults] = TrainingDefaults(
        epochs=10, batch_size=256, lr=1e-3, optimizer="adam", architecture="hard"
    )

    def __init__(self, val_fraction: float = 0.1, seed: int = 0) -> None:
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction=}")
        self.val_fraction = val_fraction
        self.seed = seed

    def feature_names(self, data_dir: Path | str) -> list[str]:
        """The names of the input columns, in order (``age``, ..., ``sex=Male``, ...)."""
        return list(_feature_names(cache_key(Path(data_dir))))

    def build_arrays(self, root: str) -> tuple[_Arrays, _Arrays, _Arrays]:
        """Train, validation and test arrays (inputs and one target per task), cached."""
        return _build(root, self.val_fraction, self.seed)

    def load_splits(self, data_dir: Path | None) -> DataSplits:
        if data_dir is None:
            raise DataError("no data directory set: pass --data-dir or set MTLSEARCH_DATA_DIR")
        train, val, test = self.build_arrays(cache_key(data_dir))
        return DataSplits(_split(train), _split(val), _split(test))

    #: Encoded width of the shipped ``adult.data`` (its vocabulary); the network's structure
    #: does not depend on it, so a spec can be checked against the network with it.
    nominal_input_width: ClassVar[int] = 101

    def nominal_shapes(self) -> DataShapes:
        return DataShapes((self.nominal_input_width,))

    def network_parts(self, data: DataShapes) -> NetworkParts:
        # The encoded width follows the training file's vocabulary (101 for the shipped one).
        input_dim = data.input_dim

        def make_blocks() -> list[nn.Module]:
            return [
                nn.Sequential(nn.Linear(input_dim, 128), nn.ReLU()),
                nn.Sequential(nn.Linear(128, 64), nn.ReLU()),
            ]

        return NetworkParts(
            make_blocks=make_blocks,
            representation_dim=64,
            make_head=_binary_head,
            input_dim=input_dim,
            num_tasks=len(self.tasks),
        )
