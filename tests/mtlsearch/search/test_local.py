"""Local studies end to end on the generated `synthetic` experiment (seconds on CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from mtl_core.experiments import get_experiment
from mtl_core.metrics_delta import delta_m
from mtlsearch.search.best import best_record, best_trials, summarise_trial
from mtlsearch.search.local import (
    BASELINES_ATTR,
    baseline_config,
    prepare_local_run,
    run_local,
    run_trial,
)
from mtlsearch.search.objective import higher_is_better
from mtlsearch.search.space import trial_config_from_params
from mtlsearch.search.spec import SpecError, StudySpec

SYNTHETIC = get_experiment("synthetic")


def make_spec(**overrides: Any) -> StudySpec:
    data: dict[str, Any] = {
        "name": "local",
        "experiment": "synthetic",
        "n_trials": 3,
        "seed": 0,
        "search_space": {
            "strategies": [
                {"name": "fixed"},
                {"name": "dwa", "params": {"tau": {"low": 1, "high": 4}}},
            ],
            "epochs": 2,
            "max_train_samples": 200,
        },
        "objective": {"kind": "weighted_mean"},
    }
    data.update(overrides)
    return StudySpec.model_validate(data)


@pytest.mark.slow
def test_local_run_records_every_trial(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'local.db'}"
    study = run_local(make_spec(), url)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 3
    for trial in trials:
        attrs = trial.user_attrs
        assert set(attrs["val_metrics"]) == {"regression", "classification"}
        assert set(attrs["test_metrics"]) == {"regression", "classification"}
        assert sum(attrs["weights_normalised"].values()) == pytest.approx(2.0)
        assert attrs["config"]["architecture"] == "hard"  # resolved from the defaults
        assert attrs["config"]["epochs"] == 2 and attrs["epochs_run"] == 2
        assert sorted(trial.intermediate_values) == [1, 2]  # one report per epoch
        # the params rebuild what was trained
        rebuilt = trial_config_from_params(trial.params, make_spec(), SYNTHETIC)
        assert rebuilt.weights == attrs["config"]["weights"]
        assert rebuilt.strategy == attrs["config"]["strategy"]
        assert rebuilt.strategy_params == attrs["config"]["strategy_params"]
        m = attrs["val_metrics"]
        assert trial.value == pytest.approx((m["classification"] - m["regression"]) / 2)

    # resuming with a larger budget runs only the missing trials
    study = run_local(make_spec(n_trials=5), url)
    assert len(study.trials) == 5
    (best,) = best_trials(study)
    summary = summarise_trial(best, make_spec(), SYNTHETIC)
    assert summary.number == best.number
    assert summary.weights["regression"] == 1.0
    assert sum(summary.weights_normalised.values()) == pytest.approx(2.0)


def test_delta_m_trains_baselines_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dm.db'}"
    spec = make_spec(objective={"kind": "delta_m"}, n_trials=2)
    study = run_local(spec, url)
    baselines = study.user_attrs[BASELINES_ATTR]
    assert set(baselines) == {"regression", "classification"}
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        expected = delta_m(trial.user_attrs["val_metrics"], baselines, higher_is_better(SYNTHETIC))
        assert trial.value == pytest.approx(expected)
    run = prepare_local_run(spec, url)
    assert run.baselines == baselines  # read back, not retrained
    assert run.remaining == 0
    record = best_record(study, spec, SYNTHETIC)
    assert record is not None
    assert record["baselines"] == baselines
    assert record["delta_m"] == pytest.approx(study.best_value)
    assert record["config"]["weights"]["regression"] == 1.0


def test_multi_objective_keeps_a_pareto_front(tmp_path: Path) -> None:
    spec = make_spec(objective={"kind": "multi"}, sampler="random", n_trials=3)
    study = run_local(spec, f"sqlite:///{tmp_path / 'multi.db'}")
    front = best_trials(study)
    assert 1 <= len(front) <= 3
    for trial in front:
        assert len(trial.values) == 2
        assert trial.intermediate_values == {}  # multi-objective trials are not pruned
    record = best_record(study, spec, SYNTHETIC)
    assert record is not None
    assert [p["number"] for p in record["pareto"]] == [t.number for t in front]
    assert record["directions"] == ["minimize", "maximize"]  # rmse, accuracy


def test_baseline_config_uses_fixed_settings() -> None:
    spec = make_spec(
        search_space={
            "epochs": {"low": 2, "high": 6},
            "lr": {"low": 1e-4, "high": 1e-2, "log": True},
            "batch_size": 32,
            "architectures": [{"name": "mmoe", "params": {"num_experts": 3}}],
        }
    )
    config = baseline_config(spec)
    assert (config.epochs, config.lr, config.batch_size) == (6, None, 32)
    assert config.architecture == "mmoe" and config.architecture_params == {"num_experts": 3}


def test_unknown_strategy_fails_before_any_trial(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    spec = make_spec(search_space={"strategies": [{"name": "nope"}]})
    with pytest.raises(SpecError, match="valid choices"):
        run_local(spec, url)
    assert optuna.get_all_study_names(url) == []


def test_pruned_trial_stops_after_the_epoch_it_was_pruned() -> None:
    # Any value above -1e9 is pruned: the trial stops after its first epoch.
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(upper=-1e9)
    )
    spec = make_spec(search_space={"epochs": 3, "max_train_samples": 200})
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned, match="after epoch 1"):
        run_trial(trial, spec, SYNTHETIC, data_dir=None)
    frozen = study.tell(trial, state=TrialState.PRUNED)
    assert list(frozen.intermediate_values) == [1]
    assert frozen.user_attrs["epochs_run"] == 1
    assert "after epoch 1" in frozen.user_attrs["stop_reason"]
