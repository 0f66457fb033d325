"""MultiMNIST: shapes, labels, digit sources, placement, reproducibility, network parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mtl_core.experiments import get_experiment
from mtl_core.experiments import multi_mnist as mm
from mtl_core.experiments.data import read_idx_images, read_idx_labels


def small(seed: int = 0, normalize: bool = True, image_size: int = 28) -> mm.MultiMNIST:
    """600 / 200 / 100 pairs: quick to build."""
    return mm.MultiMNIST(600, 200, 100, seed=seed, normalize=normalize, image_size=image_size)


@pytest.fixture(scope="module")
def mnist(data_dir: Path) -> dict[str, np.ndarray]:
    return {
        "train_images": read_idx_images(data_dir / mm.TRAIN_IMAGES.relative_path),
        "train_labels": read_idx_labels(data_dir / mm.TRAIN_LABELS.relative_path),
        "test_images": read_idx_images(data_dir / mm.TEST_IMAGES.relative_path),
        "test_labels": read_idx_labels(data_dir / mm.TEST_LABELS.relative_path),
    }


def test_default_sizes_shapes_and_ranges(data_dir: Path) -> None:
    splits = get_experiment("multi_mnist").load(data_dir)
    for split, n in ((splits.train, 60_000), (splits.val, 10_000), (splits.test, 10_000)):
        assert split.x.shape == (n, 1, 28, 28)
        assert split.x.dtype == torch.float32
        assert torch.isfinite(split.x).all()
        for target in split.targets:
            assert target.shape == (n,)
            assert target.dtype == torch.int64
            assert int(target.min()) == 0 and int(target.max()) == 9
    # Standardised with MNIST's mean/std: a blank pixel is -mean/std, a full one (1-mean)/std.
    lo, hi = -mm.MNIST_MEAN / mm.MNIST_STD, (1 - mm.MNIST_MEAN) / mm.MNIST_STD
    assert float(splits.train.x.min()) == pytest.approx(lo, abs=1e-5)
    assert float(splits.train.x.max()) == pytest.approx(hi, abs=1e-5)


def _by_hand(images: np.ndarray, left: int, right: int, size: int = 28) -> np.ndarray:
    """Sener & Koltun's loader, pixel by pixel: 36x36 canvas, right digit at 6, resize."""
    canvas = np.zeros((36, 36), dtype=np.float32)
    canvas[0:28, 0:28] = images[left]
    for r in range(28):
        for c in range(28):
            canvas[6 + r, 6 + c] = max(canvas[6 + r, 6 + c], images[right][r, c])
    # nearest neighbour 36 -> 28 keeps canvas row floor(i * 36 / 28) for output row i
    keep = [int(i * 36 // size) for i in range(size)]
    return canvas[np.ix_(keep, keep)] / 255.0


def test_samples_are_two_placed_digits_from_disjoint_sources(
    data_dir: Path, mnist: dict[str, np.ndarray]
) -> None:
    experiment = small(normalize=False)
    splits = experiment.load(data_dir)
    sources = {
        # split index, its split, the digit pool it must draw from (offset into the file)
        "train": (0, splits.train, mnist["train_images"], mnist["train_labels"], 0, 50_000),
        "val": (1, splits.val, mnist["train_images"], mnist["train_labels"], 50_000, 10_000),
        "test": (2, splits.test, mnist["test_images"], mnist["test_labels"], 0, 10_000),
    }
    for index, split, images, labels, offset, pool in sources.values():
        pairs = mm.source_indices(len(split), pool, seed=0, split=index)
        assert pairs.min() >= 0 and pairs.max() < pool
        assert (pairs[:, 0] != pairs[:, 1]).all()
        pairs = pairs + offset
        np.testing.assert_array_equal(split.targets[0].numpy(), labels[pairs[:, 0]])
        np.testing.assert_array_equal(split.targets[1].numpy(), labels[pairs[:, 1]])
        for i in (0, len(split) - 1):
            expected = _by_hand(images, int(pairs[i, 0]), int(pairs[i, 1]))
            np.testing.assert_allclose(split.x[i, 0].numpy(), expected, atol=1e-6)
    # The canvas's top-left 6x6 corner holds only the left digit, rows/cols 28-33 only the
    # right one; the resize keeps canvas rows 0, 1, 2, 3, 5 and 28, 29, 30, 32, 33 of them.
    i = 0
    pairs = mm.source_indices(len(splits.train), 50_000, seed=0, split=0)
    left, right = mnist["train_images"][pairs[i, 0]], mnist["train_images"][pairs[i, 1]]
    keep = mm.nearest_rows(28)
    corner = keep[keep < 6]
    np.testing.assert_allclose(
        splits.train.x[i, 0, : len(corner), : len(corner)].numpy() * 255,
        left[np.ix_(corner, corner)],
        atol=1e-3,
    )
    far = np.flatnonzero((keep >= 28) & (keep < 34))
    np.testing.assert_allclose(
        splits.train.x[i, 0][np.ix_(far, far)].numpy() * 255,
        right[np.ix_(keep[far] - 6, keep[far] - 6)],
        atol=1e-3,
    )


def test_image_size_36_keeps_the_canvas(data_dir: Path, mnist: dict[str, np.ndarray]) -> None:
    experiment = small(normalize=False, image_size=36)
    split = experiment.load(data_dir).test
    assert split.x.shape[-2:] == (36, 36)
    pairs = mm.source_indices(len(split), 10_000, seed=0, split=2)
    expected = _by_hand(mnist["test_images"], int(pairs[0, 0]), int(pairs[0, 1]), size=36)
    np.testing.assert_allclose(split.x[0, 0].numpy(), expected, atol=1e-6)
    parts = experiment.parts_for(experiment.load(data_dir))
    assert parts.input_dim == 36 * 36
    assert nn.Sequential(*parts.make_blocks())(split.x[:3]).shape == (3, 50)
    with pytest.raises(ValueError, match="image_size must be one of 28, 36"):
        mm.MultiMNIST(image_size=32)


def test_normalised_inputs_are_the_unit_inputs_standardised(data_dir: Path) -> None:
    raw = small(normalize=False).load(data_dir).val.x
    norm = small().load(data_dir).val.x
    assert float(raw.min()) == 0.0 and float(raw.max()) == 1.0
    torch.testing.assert_close(norm, (raw - mm.MNIST_MEAN) / mm.MNIST_STD)


def test_the_set_is_reproducible(data_dir: Path) -> None:
    first = small().load(data_dir)
    mm._build.cache_clear()  # build from the files again, not from the in-process cache
    second = small().load(data_dir)
    assert first.train.x is not second.train.x
    for a, b in ((first.train, second.train), (first.val, second.val), (first.test, second.test)):
        assert torch.equal(a.x, b.x)
        assert all(torch.equal(s, t) for s, t in zip(a.targets, b.targets, strict=True))
    other = small(seed=1).load(data_dir)
    assert not torch.equal(first.train.x, other.train.x)


def test_a_split_does_not_change_with_another_split_size(data_dir: Path) -> None:
    base = small().load(data_dir)
    larger = mm.MultiMNIST(train_size=700, val_size=200, test_size=100).load(data_dir)
    assert torch.equal(base.val.x, larger.val.x)
    assert torch.equal(base.train.x, larger.train.x[:600])


def test_network_parts_forward(data_dir: Path) -> None:
    experiment = small()
    parts = experiment.parts_for(experiment.load(data_dir))
    assert parts.input_dim == 28 * 28 and parts.representation_dim == 50
    assert parts.num_tasks == 2
    blocks = parts.make_blocks()
    assert len(blocks) == 3
    x = experiment.load(data_dir).train.x[:5]
    representation = nn.Sequential(*blocks)(x)
    assert representation.shape == (5, 50)
    for task in range(2):
        assert parts.make_head(task)(representation).shape == (5, 10)
    # Each call builds new parameters (soft sharing and MMoE build several trunks).
    again = parts.make_blocks()
    assert all(
        p is not q for p, q in zip(blocks[0].parameters(), again[0].parameters(), strict=True)
    )


def test_constructor_rejects_empty_splits() -> None:
    with pytest.raises(ValueError, match="val_size must be >= 1"):
        mm.MultiMNIST(val_size=0)
