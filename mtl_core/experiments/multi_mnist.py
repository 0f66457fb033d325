"""MultiMNIST: two overlapping MNIST digits on one 36x36 canvas, one task per digit.

Built as Sener & Koltun build it ("Multi-Task Learning as Multi-Objective Optimization",
NeurIPS 2018, after Sabour et al. 2017; their released loader): the left digit on rows/cols
0-27 of a 36x36 canvas, the right digit on rows/cols 6-33, overlapping by pixel-wise maximum,
then the canvas is resized to 28x28 by nearest neighbour. ``image_size=36`` keeps the full
36x36 canvas instead (the image size of Lin et al., "Pareto Multi-Task Learning", NeurIPS 2019).
"""

from __future__ import annotations

import functools
import logging
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
from mtl_core.experiments.data import cache_key, read_idx_images, read_idx_labels
from mtl_core.tasks import Task

logger = logging.getLogger(__name__)

_SOURCE = "the MNIST database, Y. LeCun & C. Cortes (http://yann.lecun.com/exdb/mnist/)"

TRAIN_IMAGES = DataFile(
    "mnist/train-images-idx3-ubyte.gz",
    "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    _SOURCE,
)
TRAIN_LABELS = DataFile(
    "mnist/train-labels-idx1-ubyte.gz",
    "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    _SOURCE,
)
TEST_IMAGES = DataFile(
    "mnist/t10k-images-idx3-ubyte.gz",
    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    _SOURCE,
)
TEST_LABELS = DataFile(
    "mnist/t10k-labels-idx1-ubyte.gz",
    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    _SOURCE,
)

CANVAS = 36
DIGIT = 28
OFFSET = 6  # the right digit starts at row and column 6 (Sener & Koltun's loader)
IMAGE_SIZES = (28, 36)
# Digits 0..49999 of MNIST's training file make training pairs, 50000..59999 validation pairs.
VAL_DIGITS_START = 50_000
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


def source_indices(num_pairs: int, num_digits: int, seed: int, split: int) -> np.ndarray:
    """Indices ``[num_pairs, 2]`` (left, right) of two different digits of a digit pool.

    Each split draws from its own generator, ``numpy.random.default_rng([seed, split])``, so
    the pairs of one split do not change when another split's size does, and a larger split
    starts with the pairs of a smaller one (one row of uniforms per pair, drawn in order).
    """
    if num_digits < 2:
        raise ValueError(f"need at least 2 digits to pair, got {num_digits=}")
    draws = np.random.default_rng([seed, split]).random((num_pairs, 2))
    left = (draws[:, 0] * num_digits).astype(np.int64)
    # Adding 1..n-1 modulo n never returns the same digit as the left one.
    shift = 1 + (draws[:, 1] * (num_digits - 1)).astype(np.int64)
    right = (left + shift) % num_digits
    return np.stack([left, right], axis=1)


def compose(images: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Canvases uint8 ``[N, 36, 36]``: left digit at rows/cols 0-27, right at 6-33, pixel max."""
    canvas = np.zeros((len(pairs), CANVAS, CANVAS), dtype=np.uint8)
    canvas[:, :DIGIT, :DIGIT] = images[pairs[:, 0]]
    lower_right = canvas[:, OFFSET : OFFSET + DIGIT, OFFSET : OFFSET + DIGIT]
    np.maximum(lower_right, images[pairs[:, 1]], out=lower_right)
    return canvas


def nearest_rows(size: int) -> np.ndarray:
    """Rows (and columns) of the 36x36 canvas that a nearest-neighbour resize to ``size`` keeps."""
    return np.floor(np.arange(size) * CANVAS / size).astype(np.int64)


def resize_nearest(canvas: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of ``[N, 36, 36]`` canvases to ``[N, size, size]``."""
    if size == CANVAS:
        return canvas
    rows = nearest_rows(size)
    return canvas[:, rows][:, :, rows]


def _to_inputs(canvas: np.ndarray, normalize: bool) -> np.ndarray:
    x = canvas.astype(np.float32)
    x *= np.float32(1.0 / 255.0)
    if normalize:
        x -= np.float32(MNIST_MEAN)
        x *= np.float32(1.0 / MNIST_STD)
    return x.reshape(len(canvas), 1, canvas.shape[1], canvas.shape[2])


_Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]  # inputs, left labels, right labels


@functools.lru_cache(maxsize=4)
def _build(
    root: str, sizes: tuple[int, int, int], seed: int, normalize: bool, image_size: int
) -> tuple[_Arrays, _Arrays, _Arrays]:
    data_dir = Path(root)
    train_images = read_idx_images(data_dir / TRAIN_IMAGES.relative_path)
    train_labels = read_idx_labels(data_dir / TRAIN_LABELS.relative_path)
    test_images = read_idx_images(data_dir / TEST_IMAGES.relative_path)
    test_labels = read_idx_labels(data_dir / TEST_LABELS.relative_path)
    if len(train_images) != len(train_labels) or len(test_images) != len(test_labels):
        raise DataError(
            f"MNIST images and labels disagree in count under {data_dir}: "
            f"train {len(train_images)}/{len(train_labels)}, "
            f"test {len(test_images)}/{len(test_labels)}"
        )
    if len(train_images) <= VAL_DIGITS_START:
        raise DataError(
            f"MNIST training file under {data_dir} has {len(train_images)} digits, "
            f"expected more than {VAL_DIGITS_START}"
        )
    pools = (
        (train_images[:VAL_DIGITS_START], train_labels[:VAL_DIGITS_START]),
        (train_images[VAL_DIGITS_START:], train_labels[VAL_DIGITS_START:]),
        (test_images, test_labels),
    )
    out = []
    for split, ((images, labels), size) in enumerate(zip(pools, sizes, strict=True)):
        pairs = source_indices(size, len(images), seed, split)
        x = _to_inputs(resize_nearest(compose(images, pairs), image_size), normalize)
        y = labels[pairs].astype(np.int64)
        out.append((x, np.ascontiguousarray(y[:, 0]), np.ascontiguousarray(y[:, 1])))
    logger.info("built MultiMNIST %s from %s", "/".join(map(str, sizes)), data_dir)
    return out[0], out[1], out[2]


def _split(arrays: _Arrays) -> Split:
    x, left, right = arrays
    return Split(torch.from_numpy(x), [torch.from_numpy(left), torch.from_numpy(right)])


def lenet_flat_dim(image_size: int) -> int:
    """Width after the LeNet's two conv5 + pool2 stages: 28 → 20·4·4 = 320, 36 → 20·6·6 = 720."""
    side = ((image_size - 4) // 2 - 4) // 2
    return 20 * side * side


def _lenet_blocks(image_size: int) -> list[nn.Module]:
    # The MGDA paper's LeNet (320 → 50 on 28x28 inputs).
    return [
        nn.Sequential(nn.Conv2d(1, 10, 5), nn.MaxPool2d(2), nn.ReLU()),
        nn.Sequential(nn.Conv2d(10, 20, 5), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten()),
        nn.Sequential(nn.Linear(lenet_flat_dim(image_size), 50), nn.ReLU()),
    ]


def _digit_head(task_index: int) -> nn.Module:
    return nn.Sequential(nn.Linear(50, 50), nn.ReLU(), nn.Linear(50, 10))


@register_experiment
class MultiMNIST(Experiment):
    """MultiMNIST: classify the top-left ("left") and bottom-right ("right") digit.

    Sener & Koltun, NeurIPS 2018. Each sample overlays two different MNIST digits on a 36x36
    canvas by pixel-wise maximum: the "left" digit on rows/cols 0-27, the "right" one on
    rows/cols 6-33; the canvas is then resized to 28x28 by nearest neighbour, as in their loader
    (``image_size=36`` keeps the canvas, the size Pareto MTL, Lin et al. 2019, trains on).
    Pairs are drawn with a fixed seed, so the set is the same on every machine. Training pairs
    use MNIST training digits 0-49999, validation pairs digits 50000-59999, test pairs the
    t10k digits. The Pareto-MTL pickle held 120,000 training and 20,000 test images; pass
    those sizes to match it.

    The built arrays are cached in this process and shared between calls: treat the tensors of
    the returned splits as read-only.

    Args:
        train_size: number of training pairs (default 60,000).
        val_size: number of validation pairs (default 10,000).
        test_size: number of test pairs (default 10,000).
        seed: seed of the pair draws.
        image_size: 28 (default: Sener & Koltun's resize) or 36 (the full canvas).
        normalize: scale pixels to [0, 1] and then standardise with MNIST's mean 0.1307 and
            std 0.3081 (as the Pareto-MTL code does); False keeps [0, 1].
    """

    name: ClassVar[str] = "multi_mnist"
    description: ClassVar[str] = (
        "MultiMNIST (Sener & Koltun 2018): two overlapping MNIST digits on a 36x36 canvas, "
        "resized to 28x28; 10-way classification of the top-left and the bottom-right digit; "
        "LeNet trunk."
    )
    tasks: ClassVar[tuple[Task, ...]] = (
        Task("left", "cross_entropy", "accuracy", 10, ("macro_f1",)),
        Task("right", "cross_entropy", "accuracy", 10, ("macro_f1",)),
    )
    files: ClassVar[tuple[DataFile, ...]] = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
    defaults: ClassVar[TrainingDefaults] = TrainingDefaults(
        epochs=10, batch_size=256, lr=1e-3, optimizer="adam", architecture="hard"
    )

    def __init__(
        self,
        train_size: int = 60_000,
        val_size: int = 10_000,
        test_size: int = 10_000,
        seed: int = 0,
        normalize: bool = True,
        image_size: int = 28,
    ) -> None:
        if image_size not in IMAGE_SIZES:
            raise ValueError(f"image_size must be one of 28, 36, got {image_size=}")
        for label, value in (
            ("train_size", train_size),
            ("val_size", val_size),
            ("test_size", test_size),
        ):
            if value < 1:
                raise ValueError(f"{label} must be >= 1, got {value}")
        self.train_size = train_size
        self.val_size = val_size
        self.test_size = test_size
        self.seed = seed
        self.normalize = normalize
        self.image_size = image_size

    def load_splits(self, data_dir: Path | None) -> DataSplits:
        if data_dir is None:
            raise DataError("no data directory set: pass --data-dir or set MTLSEARCH_DATA_DIR")
        sizes = (self.train_size, self.val_size, self.test_size)
        train, val, test = _build(
            cache_key(data_dir), sizes, self.seed, self.normalize, self.image_size
        )
        return DataSplits(_split(train), _split(val), _split(test))

    def nominal_shapes(self) -> DataShapes:
        return DataShapes((1, self.image_size, self.image_size))

    def network_parts(self, data: DataShapes) -> NetworkParts:
        # Inputs [1, S, S]: the LeNet's flattened width follows the image side S.
        return NetworkParts(
            make_blocks=functools.partial(_lenet_blocks, data.input_shape[-1]),
            representation_dim=50,
            make_head=_digit_head,
            input_dim=data.input_dim,
            num_tasks=len(self.tasks),
        )
