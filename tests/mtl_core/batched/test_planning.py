"""Which trials have a batched form: the strategy's and the architecture's own capabilities
decide, never a list of names."""

from __future__ import annotations

from typing import Any

import pytest

from mtl_core.architectures import ARCHITECTURES, make_architecture
from mtl_core.batched import batchable
from mtl_core.config import TrialConfig
from mtl_core.weighting import STRATEGIES, list_strategies, parse_strategy_config

NEED_SHARED = [n for n in list_strategies() if STRATEGIES.get(n).needs_shared_parameters]
LOSS_ONLY = [n for n in list_strategies() if not STRATEGIES.get(n).needs_shared_parameters]
#: Strategies whose default config works on the shared representation.
ON_REPRESENTATION = [
    n
    for n in list_strategies()
    if STRATEGIES.get(n).gradient_space(parse_strategy_config(n, None)) == "representation"
]


def _config(strategy: str, architecture: str, **params: Any) -> TrialConfig:
    return TrialConfig(
        experiment="synthetic",
        strategy=strategy,
        architecture=architecture,
        architecture_params=params,
        epochs=1,
    )


def test_every_gradient_method_and_gradnorm_need_shared_parameters() -> None:
    gradient_methods = {n for n in list_strategies() if STRATEGIES.get(n).uses_task_gradients}
    assert gradient_methods <= set(NEED_SHARED)
    assert "gradnorm" in NEED_SHARED  # its W is the last shared layer
    assert "fixed" in LOSS_ONLY


@pytest.mark.parametrize(
    ("architecture", "params", "shares"),
    [
        ("hard", {}, True),
        ("hard", {"shared_depth": 0}, False),
        ("mmoe", {}, True),
        ("soft", {}, False),
    ],
)
def test_an_architecture_says_whether_it_shares_parameters(
    architecture: str, params: dict[str, Any], shares: bool
) -> None:
    assert make_architecture(architecture, params).shares_parameters() is shares


@pytest.mark.parametrize(
    ("architecture", "params", "exposes"),
    [
        ("hard", {}, True),
        ("hard", {"shared_depth": 1}, True),
        ("hard", {"shared_depth": 0}, False),
        ("mmoe", {}, False),
        ("soft", {}, False),
    ],
)
def test_an_architecture_says_whether_it_exposes_one_representation(
    architecture: str, params: dict[str, Any], exposes: bool
) -> None:
    assert make_architecture(architecture, params).exposes_representation() is exposes


@pytest.mark.parametrize(
    ("strategy", "params"),
    [("mgda", {"upper_bound": True}), *((n, {}) for n in ON_REPRESENTATION)],
)
def test_a_method_on_the_representation_trains_alone_where_there_is_none(
    strategy: str, params: dict[str, Any]
) -> None:
    def config(architecture: str) -> TrialConfig:
        return _config(strategy, architecture).model_copy(update={"strategy_params": params})

    assert batchable(config("hard"))
    assert not batchable(config("mmoe"))
    assert not batchable(config("soft"))


@pytest.mark.parametrize("strategy", NEED_SHARED)
def test_a_method_that_needs_shared_parameters_trains_alone_where_none_are_shared(
    strategy: str,
) -> None:
    assert batchable(_config(strategy, "hard"))
    assert not batchable(_config(strategy, "soft"))
    assert not batchable(_config(strategy, "hard", shared_depth=0))


@pytest.mark.parametrize("strategy", LOSS_ONLY)
@pytest.mark.parametrize("architecture", ARCHITECTURES.names())
def test_a_loss_based_method_batches_on_every_architecture(
    strategy: str, architecture: str
) -> None:
    assert batchable(_config(strategy, architecture))


def test_bad_architecture_params_have_no_batched_form() -> None:
    assert not batchable(_config("fixed", "hard", shared_depth=-1))
