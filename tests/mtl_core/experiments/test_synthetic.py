"""The synthetic experiment: sizes, the built-in task conflict, reproducibility, parts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mtl_core.experiments import get_experiment
from mtl_core.experiments.synthetic import Synthetic, task_directions


def test_sizes_and_dtypes() -> None:
    splits = get_experiment("synthetic").load(None)
    for split, n in ((splits.train, 2000), (splits.val, 500), (splits.test, 500)):
        assert split.x.shape == (n, 16) and split.x.dtype == torch.float32
        assert split.targets[0].shape == (n,) and split.targets[0].dtype == torch.float32
        assert split.targets[1].dtype == torch.int64
    counts = torch.bincount(splits.train.targets[1], minlength=3)
    assert len(counts) == 3 and int(counts.min()) > 500  # roughly balanced thirds


def test_task_directions_conflict() -> None:
    a, b = task_directions(seed=0, cosine=-0.5)
    assert np.linalg.norm(a) == pytest.approx(1.0)
    assert np.linalg.norm(b) == pytest.approx(1.0)
    assert float(a @ b) == pytest.approx(-0.5)


def test_the_data_carry_the_conflict() -> None:
    """Least-squares directions fitted on the data point about 120 degrees apart."""
    train = Synthetic(train_size=4000).load(None).train
    x = train.x.double().numpy()
    w_reg = np.linalg.lstsq(x, train.targets[0].double().numpy(), rcond=None)[0]
    w_cls = np.linalg.lstsq(x, train.targets[1].double().numpy() - 1.0, rcond=None)[0]
    cosine = w_reg @ w_cls / (np.linalg.norm(w_reg) * np.linalg.norm(w_cls))
    assert cosine == pytest.approx(-0.5, abs=0.05)
    residual = train.targets[0].double().numpy() - x @ w_reg
    assert residual.std() == pytest.approx(0.1, abs=0.02)


def test_reproducible_and_seeded() -> None:
    first = Synthetic(seed=3).load(None)
    second = Synthetic(seed=3).load(None)
    other = Synthetic(seed=4).load(None)
    assert torch.equal(first.test.x, second.test.x)
    assert torch.equal(first.test.targets[1], second.test.targets[1])
    assert not torch.equal(first.test.x, other.test.x)
    # The three splits are different samples.
    assert not torch.equal(first.train.x[:500], first.val.x)


def test_network_parts_forward() -> None:
    experiment = Synthetic()
    splits = experiment.load(None)
    parts = experiment.parts_for(splits)
    x = splits.val.x[:4]
    representation = nn.Sequential(*parts.make_blocks())(x)
    assert representation.shape == (4, parts.representation_dim) == (4, 32)
    assert parts.make_head(0)(representation).shape == (4, 1)
    assert parts.make_head(1)(representation).shape == (4, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"train_size": 0}, "train_size"), ({"cosine": -1.5}, "cosine"), ({"noise": -1}, "noise")],
)
def test_constructor_validates(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Synthetic(**kwargs)  # type: ignore[arg-type]
