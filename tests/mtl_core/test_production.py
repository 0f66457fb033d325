"""`build_loss_from_best`: a study's best record drives a user's own training loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtl_core import ConfigError, build_loss_from_best
from mtl_core.components import search_ranges
from mtl_core.weighting import STRATEGIES, list_strategies


class UserModel(nn.Module):
    """A model the user wrote themselves: not an mtl_core MultiTaskModel."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(4, 16), nn.ReLU())
        self.heads = nn.ModuleDict({"a": nn.Linear(16, 1), "b": nn.Linear(16, 1)})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.trunk(x)
        return {name: head(z).squeeze(-1) for name, head in self.heads.items()}


def best_record(strategy: str, params: dict[str, object], weights: dict[str, float]) -> dict:
    return {
        "config": {
            "strategy": strategy,
            "strategy_params": params,
            "weights": weights,
            "epochs": 3,
        }
    }


def train(best: dict, steps: int = 60) -> tuple[list[float], dict[str, float]]:
    """``steps`` full-batch steps of `UserModel` under the record's loss: (totals, weights)."""
    torch.manual_seed(0)
    model = UserModel()
    loss_module = build_loss_from_best(best)
    optimizer = torch.optim.Adam([*model.parameters(), *loss_module.parameters()], lr=1e-2)
    x = torch.randn(128, 4)
    targets = {"a": x[:, 0] * 2, "b": x[:, 1] - x[:, 2]}
    totals, weights = [], {}
    for _ in range(steps):
        z = model.trunk(x)
        losses = {
            t: nn.functional.mse_loss(model.heads[t](z).squeeze(-1), targets[t]) for t in "ab"
        }
        optimizer.zero_grad()
        weights = loss_module.backward(
            losses,
            shared_parameters=list(model.trunk.parameters()),
            task_parameters=list(model.heads.parameters()),
            representation=z,
            # MoDo, SDMGrad read further batches: full-batch training repeats the one batch.
            extra_losses=[losses] * (loss_module.batches_per_step - 1),
        )
        optimizer.step()
        totals.append(sum(v.item() for v in losses.values()))
    return totals, weights


@pytest.mark.parametrize(
    ("strategy", "params"),
    [("fixed", {}), ("uncertainty", {}), ("dwa", {"tau": 2.0}), ("pcgrad", {}), ("mgda", {})],
)
def test_best_record_trains_a_user_model(strategy: str, params: dict[str, object]) -> None:
    totals, weights = train(best_record(strategy, params, {"a": 1.0, "b": 0.5}))
    assert totals[-1] < 0.5 * totals[0]
    assert sum(weights.values()) == pytest.approx(2.0, rel=1e-4)


#: Every registered strategy at each end of each range it declares for search (the others at
#: their defaults): what a study can find, production can rebuild and train with.
RANGE_ENDS = [
    (name, {param: end})
    for name in list_strategies()
    if not STRATEGIES.get(name).reads_validation
    for param, declared in search_ranges(STRATEGIES.get(name).config_cls).items()
    for end in declared.get("choices", [declared.get("low"), declared.get("high")])
]


@pytest.mark.parametrize(("strategy", "params"), RANGE_ENDS, ids=lambda v: str(v))
def test_a_searched_value_at_its_range_end_is_rebuilt_and_trains(
    strategy: str, params: dict[str, object]
) -> None:
    totals, weights = train(best_record(strategy, params, {"a": 1.0, "b": 0.5}), steps=30)
    assert all(torch.isfinite(torch.tensor(totals)))
    assert totals[-1] < totals[0]
    assert sum(weights.values()) == pytest.approx(2.0, rel=1e-4)


@pytest.mark.parametrize(
    "strategy", [n for n in list_strategies() if STRATEGIES.get(n).reads_validation]
)
def test_a_meta_learned_record_trains_with_the_weights_it_learned(strategy: str) -> None:
    """Meta-learned weights need the trainer's look-ahead: the record's own strategy is
    refused with the way out, and its learned weights train a user model."""
    record = best_record(strategy, {}, {"a": 1.0, "b": 0.5})
    with pytest.raises(ConfigError, match="effective_weights=True"):
        build_loss_from_best(record)
    record["strategy_weights"] = {"a": 1.5, "b": 0.5}
    loss_module = build_loss_from_best(record, effective_weights=True)
    assert loss_module.fixed_weights.tolist() == [1.5, 0.25]
    totals, _ = train(
        {
            **record,
            "config": {**record["config"], "strategy": "fixed", "weights": {"a": 1.5, "b": 0.25}},
        },
        steps=30,
    )
    assert totals[-1] < totals[0]


def test_fixed_weights_from_the_record_are_applied() -> None:
    _, weights = train(best_record("fixed", {}, {"a": 1.0, "b": 0.0}), steps=2)
    assert weights["b"] == 0.0


def test_uncertainty_exposes_its_learnable_parameters() -> None:
    loss_module = build_loss_from_best(best_record("uncertainty", {}, {"a": 1.0, "b": 1.0}))
    assert sum(p.numel() for p in loss_module.parameters()) == 2


def test_a_record_without_config_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no 'config'"):
        build_loss_from_best({"weights": {"a": 1.0}})


def test_missing_task_loss_is_named() -> None:
    loss_module = build_loss_from_best(best_record("fixed", {}, {"a": 1.0, "b": 1.0}))
    with pytest.raises(ConfigError, match="no loss given for task"):
        loss_module.backward({"a": torch.tensor(1.0, requires_grad=True)}, shared_parameters=[])


def test_the_strategy_as_searched_is_the_default() -> None:
    record = best_record("dwa", {"tau": 2.0}, {"a": 1.0, "b": 0.5})
    record["strategy_weights"] = {"a": 1.3, "b": 0.7}
    loss_module = build_loss_from_best(record)
    assert loss_module.strategy.names == ["dwa"]
    assert loss_module.fixed_weights.tolist() == [1.0, 0.5]


@pytest.mark.parametrize(
    ("strategy", "weights", "applied", "effective"),
    [
        # A dynamic strategy under weights 1: its own weights are the effective ones.
        ("dwa", {"a": 1.0, "b": 1.0}, {"b": 0.75, "a": 1.25}, [1.25, 0.75]),
        ("pcgrad", {"a": 1.0, "b": 1.0}, {"a": 0.5, "b": 1.5}, [0.5, 1.5]),
        # `fixed` applies λ = 1 to its searched weights; searched weights under uncertainty.
        ("fixed", {"a": 1.0, "b": 0.25}, {"a": 1.0, "b": 1.0}, [1.0, 0.25]),
        ("uncertainty", {"a": 1.0, "b": 2.0}, {"a": 1.2, "b": 0.8}, [1.2, 1.6]),
    ],
)
def test_effective_weights_build_a_fixed_loss_with_the_applied_ones(
    strategy: str, weights: dict[str, float], applied: dict[str, float], effective: list[float]
) -> None:
    record = best_record(strategy, {}, weights) | {"strategy_weights": applied}
    loss_module = build_loss_from_best(record, effective_weights=True)
    assert loss_module.strategy.names == ["fixed"]
    assert list(loss_module.parameters()) == []  # nothing learnable left
    assert loss_module.task_names == ("a", "b")  # the config's task order
    assert loss_module.fixed_weights.tolist() == pytest.approx(effective)
    model = UserModel()
    out = model(torch.randn(8, 4))
    step = loss_module.backward(
        {t: out[t].pow(2).mean() for t in ("a", "b")},
        shared_parameters=list(model.trunk.parameters()),
        task_parameters=list(model.heads.parameters()),
    )
    assert step == {"a": 1.0, "b": 1.0}  # `fixed` adds nothing to the fixed weights


@pytest.mark.parametrize("applied", [None, {}, {"a": 1.0}, {"a": 1.0, "b": None}])
def test_effective_weights_need_finite_strategy_weights_for_every_task(
    applied: dict[str, float | None] | None,
) -> None:
    record = best_record("dwa", {}, {"a": 1.0, "b": 1.0})
    record["strategy_weights"] = applied
    with pytest.raises(ConfigError, match="no finite 'strategy_weights' for every task"):
        build_loss_from_best(record, effective_weights=True)
