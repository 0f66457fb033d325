"""The experiment contract: tasks + data + the network's parts + sensible training defaults."""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor

from mtl_core.architectures import NetworkParts
from mtl_core.tasks import Task


@dataclass
class Split:
    """One split of a data set: inputs and one target tensor per task, in task order."""

    x: Tensor
    targets: list[Tensor]

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), [t.to(device) for t in self.targets])


@dataclass
class DataSplits:
    train: Split
    val: Split
    test: Split

    def to(self, device: torch.device | str) -> DataSplits:
        return DataSplits(self.train.to(device), self.val.to(device), self.test.to(device))

    def nbytes(self) -> int:
        total = 0
        for split in (self.train, self.val, self.test):
            total += split.x.element_size() * split.x.numel()
            total += sum(t.element_size() * t.numel() for t in split.targets)
        return total


@dataclass(frozen=True)
class DataShapes:
    """The shapes of the loaded data, what `Experiment.network_parts` builds the network for.

    Args:
        input_shape: one sample's input shape, ``x.shape[1:]`` of the splits: ``(101,)`` for a
            table of 101 features, ``(1, 28, 28)`` for a one-channel image.
        target_shapes: one sample's target shape per task, in task order: ``()`` for a ``[N]``
            target, ``(3,)`` for ``[N, 3]``.
    """

    input_shape: tuple[int, ...]
    target_shapes: tuple[tuple[int, ...], ...] = ()

    @property
    def input_dim(self) -> int:
        """Input features per sample once flattened (what `NetworkParts.input_dim` must be)."""
        return math.prod(self.input_shape)

    @classmethod
    def of(cls, splits: DataSplits) -> DataShapes:
        """The shapes of ``splits`` (those of its training split; `Experiment.load` checks that
        the three splits agree)."""
        train = splits.train
        return cls(
            tuple(int(d) for d in train.x.shape[1:]),
            tuple(tuple(int(d) for d in t.shape[1:]) for t in train.targets),
        )


@dataclass(frozen=True)
class TrainingDefaults:
    """What `mtlsearch train --experiment X` uses when the user gives nothing else."""

    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    optimizer: str = "adam"
    architecture: str = "hard"


_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class DataFile:
    """A file an experiment reads, with its checksum and where to get it.

    The file lives below the data directory (``--data-dir`` / ``MTLSEARCH_DATA_DIR``), in a
    folder of the experiment's own; `Experiment.load` checks that it is there with this sha256
    before `load_splits` reads it (``data_dir / relative_path``).

    Args:
        relative_path: POSIX path below the data directory, e.g.
            ``"mnist/train-images-idx3-ubyte.gz"``; not absolute, no ``..``.
        sha256: the file's sha256, 64 lowercase hex digits (``sha256sum FILE``).
        source: where to get the file (a URL, a citation), named in the errors.

    Raises:
        ValueError: a field that does not have this form.
    """

    relative_path: str
    sha256: str
    source: str

    def __post_init__(self) -> None:
        path = self.relative_path
        if (
            not isinstance(path, str)
            or not path
            or path.startswith("/")
            or "\\" in path
            or ":" in path
            or any(part in ("", ".", "..") for part in path.split("/"))
        ):
            raise ValueError(
                "DataFile relative_path must be a relative POSIX path below the data directory "
                f"(e.g. 'my_experiment/train.csv'; no '..', no leading '/'), got {path!r}"
            )
        digest = self.sha256
        if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _HEX:
            raise ValueError(
                f"DataFile {path!r}: sha256 must be 64 lowercase hex digits (the output of "
                f"`sha256sum`), got {digest!r}"
            )
        if not isinstance(self.source, str) or not self.source.strip():
            raise ValueError(
                f"DataFile {path!r}: source must say where to get the file (a URL or a "
                f"citation), got {self.source!r}"
            )


class Experiment(abc.ABC):
    """Base class of an experiment; one subclass per module, registered in `EXPERIMENTS`.

    Subclasses set `name`, `description`, `tasks`, `files` and `defaults`, and implement
    `load_splits` and `network_parts`. Instances are cheap; data are read by `load`, and the
    network is built for the loaded data by `parts_for`.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    tasks: ClassVar[tuple[Task, ...]]
    files: ClassVar[tuple[DataFile, ...]] = ()
    defaults: ClassVar[TrainingDefaults] = TrainingDefaults()

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def load(self, data_dir: Path | str | None) -> DataSplits:
        """Verify the data files under ``data_dir`` and return the splits (on CPU).

        Raises:
            DataError: a data file is missing or fails its checksum.
            ExperimentError: the splits do not fit the tasks (inputs not float32 tensors of one
                shape in every split, not one target per task, a target whose shape or dtype
                does not fit its loss), or the network parts do not fit the data (see
                `parts_for`; two training rows are also run through fresh blocks and heads).
        """
        from mtl_core.experiments._checks import check_forward, check_splits
        from mtl_core.experiments.data import verify_files

        root = Path(data_dir) if data_dir is not None else None
        if self.files:
            verify_files(root, self.files)
        splits = self.load_splits(root)
        check_splits(self, splits)
        check_forward(self, self.parts_for(splits), splits.train)
        return splits

    def parts_for(self, data: DataSplits | DataShapes) -> NetworkParts:
        """`network_parts` for ``data`` (the splits `load` returned, or their `DataShapes`).

        A subclass that still defines ``network_parts(self)`` without the data argument is
        called without it.

        Raises:
            ExperimentError: `network_parts` raised, or returned parts whose ``num_tasks`` is
                not the number of tasks or whose ``input_dim`` is not the data's.
        """
        from mtl_core.experiments._checks import build_parts

        shapes = data if isinstance(data, DataShapes) else DataShapes.of(data)
        return build_parts(self, shapes)

    def nominal_shapes(self) -> DataShapes | None:
        """The shapes this experiment's data have, when known without reading them.

        A study spec's architectures are then checked against the network built for them
        (`Architecture.check_parts`) when the study is created, before any data are read.
        None (the default) leaves those checks to the first trial, which fails with the same
        one-line message.
        """
        return None

    @abc.abstractmethod
    def load_splits(self, data_dir: Path | None) -> DataSplits:
        """Read the (already verified) files and build train / val / test."""

    @abc.abstractmethod
    def network_parts(self, data: DataShapes) -> NetworkParts:
        """Trunk blocks, representation width and task heads for data of these shapes.

        Called through `parts_for` once the data are loaded (never at registration), for each
        trial; build the first block for ``data.input_shape`` (``data.input_dim`` features once
        flattened) and set ``input_dim=data.input_dim``.
        """


@dataclass
class ExperimentInfo:
    """A plain description of an experiment (for the CLI and the REST API)."""

    name: str
    description: str
    tasks: list[dict[str, object]] = field(default_factory=list)
    defaults: dict[str, object] = field(default_factory=dict)
