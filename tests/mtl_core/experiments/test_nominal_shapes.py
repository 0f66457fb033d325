"""Each built-in experiment's nominal shapes (what a spec is checked with, before any data are
read) are the shapes of the data it loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtl_core.experiments import DataShapes, get_experiment


@pytest.mark.parametrize("name", ["adult", "adult_mixed", "multi_mnist", "synthetic"])
def test_nominal_shapes_are_the_loaded_data_shapes(name: str, data_dir: Path) -> None:
    experiment = get_experiment(name)
    nominal = experiment.nominal_shapes()
    assert nominal is not None
    assert nominal.input_shape == DataShapes.of(experiment.load(data_dir)).input_shape
