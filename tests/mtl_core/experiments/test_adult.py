"""UCI Adult: row counts, task labels against SOURCE.md's counts, encoding, network parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mtl_core.experiments import DataSplits, get_experiment
from mtl_core.experiments.adult import CATEGORICAL, COLUMNS, NUMERIC, Adult, Encoder

#: Input features of the shipped files: 6 numeric + the one-hot widths of adult.data.
INPUT_DIM = 101


@pytest.fixture(scope="module")
def splits(data_dir: Path) -> DataSplits:
    return get_experiment("adult").load(data_dir)


def test_row_counts(splits: DataSplits) -> None:
    assert len(splits.train) + len(splits.val) == 32_561
    assert len(splits.val) == 3_256
    assert len(splits.test) == 16_281


def test_label_counts_match_the_source(splits: DataSplits) -> None:
    income = torch.cat([splits.train.targets[0], splits.val.targets[0]])
    never = torch.cat([splits.train.targets[1], splits.val.targets[1]])
    assert int(income.sum()) == 7_841
    assert int(never.sum()) == 10_683
    assert int(splits.test.targets[0].sum()) == 3_846  # '>50K.' with the '.' stripped
    assert int(splits.test.targets[1].sum()) == 5_434
    for split in (splits.train, splits.val, splits.test):
        for target in split.targets:
            assert target.dtype == torch.float32 and target.shape == (len(split),)
            assert set(target.unique().tolist()) == {0.0, 1.0}


def test_inputs_have_no_marital_status_and_no_nan(splits: DataSplits, data_dir: Path) -> None:
    names = Adult().feature_names(data_dir)
    assert len(names) == INPUT_DIM == splits.train.x.shape[1]
    assert not any(name.startswith("marital-status") for name in names)
    assert "workclass=?" in names  # a missing value is a category of its own
    assert names[: len(NUMERIC)] == list(NUMERIC)
    never = splits.train.targets[1]
    for split in (splits.train, splits.val, splits.test):
        assert split.x.dtype == torch.float32
        assert not torch.isnan(split.x).any()
    # No input column simply is the label.
    assert not any(torch.equal(splits.train.x[:, j], never) for j in range(len(names)))


def test_encoding_is_fitted_on_the_training_file(splits: DataSplits) -> None:
    x = torch.cat([splits.train.x, splits.val.x])
    numeric = x[:, : len(NUMERIC)].double()
    torch.testing.assert_close(
        numeric.mean(0), torch.zeros(len(NUMERIC), dtype=torch.float64), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        numeric.std(0, correction=0),
        torch.ones(len(NUMERIC), dtype=torch.float64),
        atol=1e-5,
        rtol=0,
    )
    # Seven one-hot groups: every training row has exactly seven ones.
    onehot = x[:, len(NUMERIC) :]
    assert set(onehot.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(onehot.sum(1), torch.full((len(x),), float(len(CATEGORICAL))))


def test_unseen_category_encodes_as_zeros() -> None:
    def row(workclass: str, age: str) -> list[str]:
        values = dict.fromkeys(COLUMNS, "x")
        values.update({c: "1" for c in NUMERIC}, workclass=workclass, age=age)
        return [values[c] for c in COLUMNS]

    encoder = Encoder([row("Private", "20"), row("?", "40")])
    assert encoder.vocab["workclass"] == ["?", "Private"]
    x = encoder.transform([row("Private", "30"), row("Martian", "40")])
    workclass = slice(len(NUMERIC), len(NUMERIC) + 2)
    np.testing.assert_array_equal(x[:, workclass], [[0, 1], [0, 0]])
    np.testing.assert_allclose(x[:, 0], [0.0, 1.0])  # (age - 30) / 10
    assert encoder.feature_names[len(NUMERIC)] == "workclass=?"


def test_split_is_seeded(data_dir: Path, splits: DataSplits) -> None:
    other = Adult(seed=1).load(data_dir)
    assert torch.equal(Adult().load(data_dir).val.x, splits.val.x)
    assert not torch.equal(other.val.x, splits.val.x)
    assert torch.equal(other.test.x, splits.test.x)


def test_network_parts_forward(splits: DataSplits) -> None:
    parts = get_experiment("adult").parts_for(splits)
    # The width comes from the data (workclass 9, education 16, occupation 15,
    # relationship 6, race 5, sex 2, native-country 42 one-hot columns).
    assert parts.input_dim == INPUT_DIM and parts.representation_dim == 64
    representation = nn.Sequential(*parts.make_blocks())(splits.test.x[:7])
    assert representation.shape == (7, 64)
    for task in range(parts.num_tasks):
        assert parts.make_head(task)(representation).shape == (7, 1)


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        Adult(val_fraction=1.0)
