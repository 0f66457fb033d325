"""`build_model_from_best`: the network a best record's trial trained, for built-in and user
experiments."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
import torch

from mtl_core import ConfigError, TrialConfig, build_model_from_best
from mtl_core.architectures import MMoEModel
from mtl_core.batched.slots import new_trial
from mtl_core.experiments import EXPERIMENTS, DataShapes, get_experiment, load_plugins
from mtl_core.trial_setup import resolve_config


def record(**config: object) -> dict[str, object]:
    """A best record's ``config``: the resolved config of a synthetic trial."""
    experiment = get_experiment(str(config.get("experiment", "synthetic")))
    config = {"experiment": experiment.name, **config}
    resolved = resolve_config(TrialConfig.model_validate(config), experiment)
    return {"config": resolved.model_dump()}


def test_the_model_is_the_trials_architecture_initialised_as_the_trial_began() -> None:
    best = record(architecture="mmoe", architecture_params={"num_experts": 3}, seed=11)
    model = build_model_from_best(best)
    assert isinstance(model, MMoEModel) and len(model.experts) == 3
    experiment = get_experiment("synthetic")
    shapes = experiment.nominal_shapes()
    assert shapes is not None
    resolved = resolve_config(TrialConfig.model_validate(best["config"]), experiment)
    parts = experiment.parts_for(shapes)
    trained, _ = new_trial(resolved, None, experiment, parts, torch.device("cpu"))
    for (name, got), (_, expected) in zip(
        model.state_dict().items(), trained.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(got, expected, rtol=0, atol=0, msg=name)


def test_the_experiments_default_architecture_when_the_record_names_none() -> None:
    best = record()
    best["config"]["architecture"] = None  # type: ignore[index]
    model = build_model_from_best(best)
    assert type(model).__name__ == "HardSharingModel"


def test_a_record_without_an_experiment_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no 'config' naming its experiment"):
        build_model_from_best({"weights": {}})


@pytest.fixture
def sensors() -> Iterator[str]:
    """The user experiment of docs/experiments.md, registered as a worker does."""
    assert load_plugins(["examples.my_experiment"]) == ["sensors"]
    yield "sensors"
    EXPERIMENTS.remove("sensors")
    sys.modules.pop("examples.my_experiment", None)


def test_a_user_experiment_needs_its_data_and_then_builds(sensors: str) -> None:
    best = record(experiment=sensors, architecture="mmoe")
    with pytest.raises(ConfigError, match=r"pass data=experiment\.load"):
        build_model_from_best(best)
    experiment = get_experiment(sensors)
    splits = experiment.load(None)
    model = build_model_from_best(best, experiment, data=splits)
    outputs = model(splits.train.x[:4]).outputs
    assert [tuple(o.shape) for o in outputs] == [(4, 1), (4, 1), (4, 3)]
    same = build_model_from_best(best, sensors, data=DataShapes.of(splits))
    torch.testing.assert_close(same(splits.train.x[:4]).outputs[2], outputs[2])
