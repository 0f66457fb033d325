"""StudySpec validation (field paths in every error), the YAML example, experiment checks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from mtlsearch.search.spec import (
    MAX_GRID_POINTS,
    SpecError,
    StudySpec,
    WeightRange,
    describe_validation_error,
)
from mtlsearch.search.spec_checks import validate_against_experiment

DOC = Path(__file__).resolve().parents[3] / "docs" / "study-spec.md"


def spec_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"name": "s1", "experiment": "synthetic", "n_trials": 5}
    data.update(overrides)
    return data


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        StudySpec.model_validate(data)
    return describe_validation_error(info.value)


def test_defaults() -> None:
    spec = StudySpec.model_validate(spec_data())
    assert spec.sampler == "tpe_batch"
    assert spec.pruner == "median"
    assert spec.objective.kind == "delta_m"
    assert [c.name for c in spec.search_space.strategies] == ["fixed"]
    assert spec.search_space.default_weight == WeightRange(lo=0.1, hi=10.0)


@pytest.mark.parametrize(
    ("overrides", "path", "fragment"),
    [
        (
            {"search_space": {"weights": {"b": {"lo": 2, "hi": 1}}}},
            "search_space.weights.b",
            "hi must be >= lo",
        ),
        (
            {"search_space": {"weights": {"b": {"lo": 0, "hi": 1}}}},
            "search_space.weights.b",
            "greater than 0",
        ),
        (
            {"search_space": {"weights": {"b": {"lo": -1, "hi": 1}}}},
            "search_space.weights.b",
            "greater than 0",
        ),
        (
            {"search_space": {"weights": {"b": {"choices": []}}}},
            "search_space.weights.b",
            "at least 1",
        ),
        (
            {"search_space": {"default_weight": {"lo": 5, "hi": 1}}},
            "search_space.default_weight",
            "hi must be >= lo",
        ),
        ({"sampler": "cmaes"}, "sampler", "'tpe', 'tpe_batch', 'gp', 'random', 'grid' or 'nsga2'"),
        ({"pruner": "asha"}, "pruner", "'median', 'hyperband' or 'none'"),
        ({"n_trials": None}, "n_trials", "time_budget_s"),
        ({"n_trials": 0}, "n_trials", "between 1 and 2147483647"),
        # Trust: values that once reached a 5xx.
        ({"n_trials": 2**31}, "n_trials", "between 1 and 2147483647"),
        ({"n_trials": 1e19}, "n_trials", "between 1 and 2147483647"),
        ({"seed": -5}, "seed", "between 0 and 4294967295"),
        ({"time_budget_s": float("inf")}, "time_budget_s", "finite"),
        ({"time_budget_s": float("nan")}, "time_budget_s", "finite"),
        ({"search_space": {"weight_decay": float("inf")}}, "search_space.weight_decay", "finite"),
        ({"search_space": {"grad_clip": float("nan")}}, "search_space.grad_clip", "finite"),
        (
            {"search_space": {"lr": {"choices": [float("inf")]}}},
            "search_space.lr.choices",
            "finite",
        ),
        (
            {"search_space": {"lr": {"low": 1e-300, "high": 1e300, "step": 1e-300}}},
            "search_space.lr",
            "between -1e+15 and 1e+15",
        ),
        (
            {"search_space": {"strategies": [{"name": "cagrad", "params": {"c": float("inf")}}]}},
            "search_space.strategies.0.params.c",
            "finite",
        ),
        (
            {
                "search_space": {
                    "strategies": [{"name": "cagrad", "params": {"c": [[float("nan")]]}}]
                }
            },
            "search_space.strategies.0.params.c",
            "finite",
        ),
        ({"search_space": {"epochs": 10**6}}, "search_space.epochs", "between 1 and 10000"),
        (
            {"search_space": {"batch_size": {"choices": list(range(1, 1002))}}},
            "search_space.batch_size.choices",
            "at most 1000",
        ),
        ({"time_budget_s": -1}, "time_budget_s", "greater than 0"),
        ({"name": "has space"}, "name", "pattern"),
        ({"name": "x" * 65}, "name", "at most 64"),
        ({"objective": {"kind": "multi"}, "pruner": "median"}, "pruner", "cannot prune"),
        ({"objective": {"kind": "best"}}, "objective.kind", "'delta_m'"),
        (
            {
                "search_space": {
                    "strategies": [{"name": "dwa", "params": {"tau": {"low": 3, "high": 1}}}]
                }
            },
            "search_space.strategies.0.params.tau",
            "high must be >= low",
        ),
        (
            {"search_space": {"strategies": [{"name": "dwa", "params": {"tau": {"choices": []}}}]}},
            "search_space.strategies.0.params.tau",
            "at least 1",
        ),
        (
            {
                "search_space": {
                    "strategies": [
                        {"name": "dwa", "params": {"tau": {"low": 0, "high": 2, "log": True}}}
                    ]
                }
            },
            "search_space.strategies.0.params.tau",
            "low > 0",
        ),
        ({"search_space": {"strategies": []}}, "search_space.strategies", "at least 1"),
        (
            {"search_space": {"strategies": [{"name": "dwa"}, {"name": "dwa"}]}},
            "search_space.strategies.1.name",
            "twice",
        ),
        ({"search_space": {"lr": {"low": -1, "high": 1}}}, "search_space.lr", "> 0"),
        ({"search_space": {"epochs": {"low": 1.5, "high": 3}}}, "search_space.epochs", "integer"),
        (
            {"search_space": {"batch_size": {"choices": [64, "big"]}}},
            "search_space.batch_size",
            "number",
        ),
        (
            {"search_space": {"reference_task": "a", "weights": {"a": 2}}},
            "search_space.weights.a",
            "reference",
        ),
        (
            {"objective": {"kind": "multi", "coefficients": {"a": 1}}},
            "objective.coefficients",
            "weighted_mean",
        ),
        (
            {"objective": {"kind": "weighted_mean", "baselines": {"a": 1}}},
            "objective.baselines",
            "delta_m",
        ),
        (
            {"objective": {"kind": "delta_m", "baselines": {"a": 0}}},
            "objective.baselines.a",
            "non-zero",
        ),
        ({"unknown": 1}, "unknown", "Extra inputs"),
    ],
)
def test_invalid_specs_name_their_field(
    overrides: dict[str, Any], path: str, fragment: str
) -> None:
    message = error_of(spec_data(**overrides))
    assert message.startswith(path), message
    assert fragment in message


def test_multi_objective_defaults_to_no_pruner() -> None:
    spec = StudySpec.model_validate(spec_data(objective={"kind": "multi"}))
    assert spec.pruner == "none"


@pytest.mark.parametrize("sampler", ["tpe", "tpe_batch", "gp", "random", "grid", "nsga2"])
def test_every_sampler_accepts_multi_objective(sampler: str) -> None:
    # Optuna 5: every one handles several objectives (GPSampler via log-EHVI).
    spec = StudySpec.model_validate(spec_data(objective={"kind": "multi"}, sampler=sampler))
    assert spec.sampler == sampler


def test_grid_needs_discrete_dimensions() -> None:
    message = error_of(
        spec_data(sampler="grid", search_space={"weights": {"b": {"lo": 0.5, "hi": 2}}})
    )
    assert message.startswith("search_space.weights.b")
    assert "discrete" in message
    message = error_of(
        spec_data(
            sampler="grid",
            search_space={
                "strategies": [{"name": "dwa", "params": {"tau": {"low": 1, "high": 3}}}]
            },
        )
    )
    assert message.startswith("search_space.strategies.0.params.tau")


def test_grid_size_limit() -> None:
    # 6 tasks x 5 choices = 15,625 points > 10,000; 5 tasks = 3,125 are fine.
    too_big = {f"t{i}": {"choices": [0.25, 0.5, 1, 2, 4]} for i in range(6)}
    message = error_of(spec_data(sampler="grid", search_space={"weights": too_big}))
    assert message.startswith("search_space")
    assert "15,625" in message and f"{MAX_GRID_POINTS:,}" in message
    fine = {f"t{i}": {"choices": [0.25, 0.5, 1, 2, 4]} for i in range(5)}
    StudySpec.model_validate(spec_data(sampler="grid", search_space={"weights": fine}))


def _doc_yaml() -> str:
    match = re.search(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    assert match, f"{DOC} has no yaml example"
    return match.group(1)


def test_documented_yaml_example_round_trips() -> None:
    spec = StudySpec.model_validate(yaml.safe_load(_doc_yaml()))
    assert spec.search_space.reference_task == "income"
    assert spec.search_space.weights["never_married"] == WeightRange(lo=0.05, hi=20)
    dumped = yaml.safe_dump(spec.model_dump(mode="json"))
    assert StudySpec.model_validate(yaml.safe_load(dumped)) == spec
    assert StudySpec.model_validate_json(spec.model_dump_json()) == spec


def test_documented_example_fits_its_experiment() -> None:
    spec = StudySpec.model_validate(yaml.safe_load(_doc_yaml()))
    experiment = validate_against_experiment(spec)
    assert experiment.name == "adult"


def test_json_schema_describes_fields() -> None:
    schema = StudySpec.model_json_schema()
    assert schema["additionalProperties"] is False
    assert "description" in schema["properties"]["sampler"]
    assert "WeightRange" in schema["$defs"]


# --- against the experiment -------------------------------------------------------------------


def check(**overrides: Any) -> SpecError:
    spec = StudySpec.model_validate(spec_data(**overrides))
    with pytest.raises(SpecError) as info:
        validate_against_experiment(spec)
    return info.value


def test_unknown_experiment_lists_valid() -> None:
    err = check(experiment="nope")
    assert err.field == "experiment"
    assert "'nope'" in err.message and "synthetic" in err.message and "adult" in err.message


def test_weight_for_unknown_task() -> None:
    err = check(search_space={"weights": {"depth": 2.0}})
    assert err.field == "search_space.weights.depth"
    assert "regression, classification" in err.message


def test_unknown_reference_task() -> None:
    err = check(search_space={"reference_task": "depth"})
    assert err.field == "search_space.reference_task"
    assert "regression" in err.message


def test_default_reference_task_cannot_get_another_weight() -> None:
    # The first task ("regression") is the reference unless reference_task says otherwise.
    err = check(search_space={"weights": {"regression": {"lo": 0.5, "hi": 2}}})
    assert err.field == "search_space.weights.regression"
    spec = StudySpec.model_validate(
        spec_data(
            search_space={
                "reference_task": "classification",
                "weights": {"regression": {"lo": 0.5, "hi": 2}},
            }
        )
    )
    assert validate_against_experiment(spec).name == "synthetic"


@pytest.mark.parametrize(
    ("field", "kind"),
    [("strategies", "strategy"), ("schedules", "schedule"), ("architectures", "architecture")],
)
def test_unknown_component_names_list_valid(field: str, kind: str) -> None:
    err = check(search_space={field: [{"name": "nope"}]})
    assert err.field == f"search_space.{field}.0.name"
    assert f"unknown {kind} 'nope'" in err.message
    assert "valid choices:" in err.message


def test_unknown_strategy_param_lists_valid() -> None:
    err = check(
        search_space={
            "strategies": [{"name": "fixed"}, {"name": "dwa", "params": {"temperature": 2}}]
        }
    )
    assert err.field == "search_space.strategies.1.params.temperature"
    assert "valid parameters: tau" in err.message


def test_range_end_outside_config_constraints() -> None:
    err = check(
        search_space={"strategies": [{"name": "dwa", "params": {"tau": {"low": -1, "high": 2}}}]}
    )
    assert err.field == "search_space.strategies.0.params.tau"
    assert "-1" in err.message


def test_fixed_value_outside_config_constraints() -> None:
    err = check(search_space={"architectures": [{"name": "mmoe", "params": {"num_experts": 0}}]})
    assert err.field == "search_space.architectures.0.params.num_experts"


def test_integer_parameter_needs_integer_bounds() -> None:
    err = check(
        search_space={
            "architectures": [
                {"name": "mmoe", "params": {"num_experts": {"low": 2.0, "high": 4.0}}}
            ]
        }
    )
    assert err.field == "search_space.architectures.0.params.num_experts"
    assert "integer" in err.message


def test_coefficients_must_name_every_task() -> None:
    err = check(objective={"kind": "weighted_mean", "coefficients": {"regression": 1}})
    assert err.field == "objective.coefficients"
    assert "classification" in err.message
    err = check(objective={"kind": "weighted_mean", "coefficients": {"depth": 1}})
    assert err.field == "objective.coefficients.depth"


def test_grid_over_unmentioned_tasks_is_checked_with_the_experiment() -> None:
    # Spec-level the grid is fine (no searched dimension named); the experiment's second task
    # falls back to the continuous default range.
    err = check(sampler="grid")
    assert err.field.startswith("search_space.default_weight")
    assert "discrete" in err.message


def test_spec_error_text() -> None:
    err = SpecError("search_space.lr", "must be > 0")
    assert str(err) == "search_space.lr: must be > 0"
    assert isinstance(err, ValueError)


def test_literal_parameter_needs_choices() -> None:
    err = check(
        search_space={
            "strategies": [{"name": "cagrad", "params": {"rescale": {"low": 0, "high": 2}}}]
        }
    )
    assert err.field == "search_space.strategies.0.params.rescale"
    assert "give choices" in err.message


def test_a_grid_step_too_small_for_a_float_says_too_many_points() -> None:
    # (high - low) / step overflows: once an OverflowError (500), now "too many points".
    message = error_of(
        spec_data(
            sampler="grid", search_space={"lr": {"low": 1e-300, "high": 1e10, "step": 1e-300}}
        )
    )
    assert "more than the 10,000 allowed" in message


@pytest.mark.parametrize(
    ("group", "name", "param", "value"),
    [
        ("architectures", "mmoe", "num_experts", 10**9),
        ("architectures", "mmoe", "num_experts", {"low": 1, "high": 10**9}),
        ("architectures", "mmoe", "num_experts", {"choices": [1, 10**9]}),
    ],
)
def test_component_integers_are_bounded(group: str, name: str, param: str, value: Any) -> None:
    spec = StudySpec.model_validate(
        spec_data(search_space={group: [{"name": name, "params": {param: value}}]})
    )
    with pytest.raises(SpecError, match="less than or equal to"):
        validate_against_experiment(spec)


def test_architecture_that_does_not_fit_the_experiment_is_named_up_front() -> None:
    """The check needs no data (`Experiment.nominal_shapes`)."""
    err = check(
        search_space={
            "architectures": [{"name": "hard", "params": {"shared_depth": {"low": 1, "high": 9}}}]
        }
    )
    assert err.field == "search_space.architectures.0.params.shared_depth"
    assert "the trunk has" in err.message and "got 9" in err.message
