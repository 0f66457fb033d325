"""The experiment registry, the plain descriptions, and plugins from entry points / modules."""

from __future__ import annotations

import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from mtl_core.experiments import (
    EXPERIMENTS,
    Experiment,
    describe_experiment,
    get_experiment,
    list_experiments,
    load_plugins,
    register_experiment,
)
from mtl_core.registry import UnknownNameError
from mtl_core.tasks import LOSSES, METRICS

BUILT_INS = ["adult", "adult_mixed", "multi_mnist", "synthetic"]


def test_the_built_ins_are_registered() -> None:
    assert set(BUILT_INS) <= set(list_experiments())
    for name in BUILT_INS:
        experiment = get_experiment(name)
        assert isinstance(experiment, Experiment)
        assert experiment.name == name


def test_unknown_name_lists_the_valid_names() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_experiment("multimnist")
    message = str(info.value)
    assert "multimnist" in message
    for name in BUILT_INS:
        assert name in message


def test_register_rejects_non_experiments() -> None:
    with pytest.raises(TypeError, match="Experiment subclasses"):
        register_experiment(nn.Linear)  # type: ignore[type-var]


def test_describe_experiment_is_plain_data() -> None:
    info = describe_experiment("multi_mnist")
    assert info.name == "multi_mnist"
    assert [t["name"] for t in info.tasks] == ["left", "right"]
    assert info.tasks[0]["higher_is_better"] is True
    assert info.defaults["batch_size"] == 256
    assert describe_experiment("synthetic").tasks[0]["higher_is_better"] is False


@pytest.mark.parametrize("name", list_experiments())
def test_every_experiment_is_consistent(name: str, data_dir: Path) -> None:
    """Smoke test over the whole registry: tasks, parts and data fit together."""
    experiment = get_experiment(name)
    assert EXPERIMENTS.get(name).name == name
    names = experiment.task_names
    assert len(set(names)) == len(names) >= 2
    for task in experiment.tasks:
        assert task.loss in LOSSES
        for metric in (task.metric, *task.extra_metrics):
            assert metric in METRICS
    splits = experiment.load(data_dir)
    parts = experiment.parts_for(splits)
    assert parts.num_tasks == len(experiment.tasks)
    for split in (splits.train, splits.val, splits.test):
        assert len(split) > 0
        assert len(split.targets) == len(experiment.tasks)
        assert all(len(t) == len(split) for t in split.targets)
    x = splits.train.x[:8]
    assert x[0].numel() == parts.input_dim
    representation = nn.Sequential(*parts.make_blocks())(x)
    assert representation.shape == (8, parts.representation_dim)
    for index, task in enumerate(experiment.tasks):
        out = parts.make_head(index)(representation)
        assert out.shape == (8, task.output_dim)
        loss = LOSSES.get(task.loss)(out, splits.train.targets[index][:8])
        assert torch.isfinite(loss)


# --- plugins ---------------------------------------------------------------------------------

PLUGIN_SOURCE = textwrap.dedent(
    """
    from __future__ import annotations

    from torch import nn

    from mtl_core.experiments import NetworkParts
    from mtl_core.experiments import EXPERIMENTS, DataSplits, Experiment, Split
    from mtl_core.tasks import Task


    class {cls}(Experiment):
        name = "{name}"
        tasks = (Task("a", "mse", "rmse", 1), Task("b", "mse", "rmse", 1))

        def load_splits(self, data_dir):
            raise NotImplementedError

        def network_parts(self, data):
            return NetworkParts(lambda: [nn.Linear(4, 4)], 4, lambda i: nn.Linear(4, 1), 4, 2)

    {register}
    """
)


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for plugin modules; the registry and sys.modules are restored."""
    # A fresh copy of the entries, so the plugins registered here do not leak into other tests.
    monkeypatch.setattr(EXPERIMENTS, "_entries", dict(EXPERIMENTS._entries))
    monkeypatch.setattr(LOSSES, "_entries", dict(LOSSES._entries))
    monkeypatch.setattr(METRICS, "_entries", dict(METRICS._entries))
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for module in set(sys.modules) - before:
        if module.startswith("mtlsearch_test_plugin"):
            del sys.modules[module]


def _write_plugin(directory: Path, module: str, cls: str, name: str, register: bool) -> None:
    register_line = f'EXPERIMENTS.register("{name}")({cls})' if register else ""
    (directory / f"{module}.py").write_text(
        PLUGIN_SOURCE.format(cls=cls, name=name, register=register_line)
    )


def test_allowed_module_registers_its_experiment(plugin_path: Path) -> None:
    _write_plugin(plugin_path, "mtlsearch_test_plugin_a", "UserExp", "user_exp", register=True)
    assert "user_exp" not in list_experiments()
    assert load_plugins(["mtlsearch_test_plugin_a"]) == ["user_exp"]
    experiment = get_experiment("user_exp")
    assert experiment.task_names == ("a", "b")
    # Idempotent: a second call registers nothing new and raises nothing.
    assert load_plugins(["mtlsearch_test_plugin_a"]) == []
    assert "user_exp" in list_experiments()


def test_failing_module_is_skipped_with_a_warning(
    plugin_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (plugin_path / "mtlsearch_test_plugin_broken.py").write_text("raise RuntimeError('boom')\n")
    _write_plugin(plugin_path, "mtlsearch_test_plugin_b", "UserExpB", "user_exp_b", register=True)
    with caplog.at_level(logging.WARNING, logger="mtl_core.experiments._registry"):
        added = load_plugins(
            [
                "mtlsearch_test_plugin_broken",
                "mtlsearch_test_plugin_missing",
                "../etc/passwd",
                "mtlsearch_test_plugin_b",
            ]
        )
    assert added == ["user_exp_b"]
    text = caplog.text
    assert "mtlsearch_test_plugin_broken" in text and "boom" in text
    assert "mtlsearch_test_plugin_missing" in text
    assert "../etc/passwd" in text


def test_module_clashing_with_a_built_in_is_skipped(
    plugin_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write_plugin(plugin_path, "mtlsearch_test_plugin_c", "Clash", "adult", register=True)
    with caplog.at_level(logging.WARNING, logger="mtl_core.experiments._registry"):
        assert load_plugins(["mtlsearch_test_plugin_c"]) == []
    assert "already registered" in caplog.text
    assert EXPERIMENTS.get("adult").__module__ == "mtl_core.experiments.adult"


def _write_distribution(directory: Path, entry_points: str) -> None:
    dist_info = directory / "mtlsearch_test_plugin_dist-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mtlsearch-test-plugin-dist\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(f"[mtlsearch.experiments]\n{entry_points}\n")


def test_entry_points_register_and_check_their_name(
    plugin_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write_plugin(plugin_path, "mtlsearch_test_plugin_ep", "EpExp", "ep_exp", register=False)
    _write_plugin(plugin_path, "mtlsearch_test_plugin_ep2", "Other", "other_exp", register=False)
    _write_distribution(
        plugin_path,
        "ep_exp = mtlsearch_test_plugin_ep:EpExp\n"
        "wrong_name = mtlsearch_test_plugin_ep2:Other\n"
        "not_a_class = mtlsearch_test_plugin_ep:nn\n",
    )
    with caplog.at_level(logging.WARNING, logger="mtl_core.experiments._registry"):
        added = load_plugins()
    assert added == ["ep_exp"]
    assert get_experiment("ep_exp").task_names == ("a", "b")
    assert "wrong_name" in caplog.text and "not_a_class" in caplog.text
    assert "other_exp" not in list_experiments()
    assert load_plugins() == []


def test_entry_point_with_a_mismatched_name_is_not_registered(
    plugin_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The module registers its class itself on import, under the class's own name.
    _write_plugin(plugin_path, "mtlsearch_test_plugin_self", "Self", "self_exp", register=True)
    _write_distribution(plugin_path, "other_name = mtlsearch_test_plugin_self:Self\n")
    with caplog.at_level(logging.WARNING, logger="mtl_core.experiments._registry"):
        assert load_plugins() == []
    assert "self_exp" not in list_experiments()
    assert "other_name" not in list_experiments()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "other_name" in warnings[0] and "not registered" in warnings[0]
    assert "'self_exp'" in warnings[0]


def test_module_with_a_bad_loss_is_skipped_in_one_line(
    plugin_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = PLUGIN_SOURCE.format(
        cls="BadLoss", name="bad_loss_exp", register='EXPERIMENTS.register("bad_loss_exp")(BadLoss)'
    ).replace('Task("b", "mse"', 'Task("b", "msee"')
    (plugin_path / "mtlsearch_test_plugin_bad_loss.py").write_text(source)
    with caplog.at_level(logging.WARNING, logger="mtl_core.experiments._registry"):
        assert load_plugins(["mtlsearch_test_plugin_bad_loss"]) == []
    assert "bad_loss_exp" not in list_experiments()
    assert "experiment 'bad_loss_exp' task 'b': unknown loss 'msee'" in caplog.text


USER_LOSS_SOURCE = """
from mtl_core.tasks import register_loss, register_metric


@register_loss("user_l1")
def user_l1(pred, target):
    return (pred.squeeze(-1) - target).abs().mean()


@register_metric("user_max_error", higher_is_better=False)
def user_max_error(pred, target):
    return (pred.squeeze(-1) - target).abs().max().item()
"""


def _with_user_loss(source: str) -> str:
    """``source`` registering `USER_LOSS_SOURCE`'s loss and metric before its experiment."""
    future = "from __future__ import annotations\n"
    return source.replace(future, future + USER_LOSS_SOURCE)


def test_a_module_registers_its_own_loss_and_metric_before_its_experiment(
    plugin_path: Path,
) -> None:
    source = PLUGIN_SOURCE.format(
        cls="OwnLoss", name="own_loss_exp", register='EXPERIMENTS.register("own_loss_exp")(OwnLoss)'
    ).replace('Task("b", "mse", "rmse"', 'Task("b", "user_l1", "user_max_error"')
    (plugin_path / "mtlsearch_test_plugin_own.py").write_text(_with_user_loss(source))
    assert load_plugins(["mtlsearch_test_plugin_own"]) == ["own_loss_exp"]
    assert "user_l1" in LOSSES and "user_max_error" in METRICS
    tasks = describe_experiment("own_loss_exp").tasks
    assert tasks[1]["loss"] == "user_l1"
    assert tasks[1]["metric"] == "user_max_error" and tasks[1]["higher_is_better"] is False


def test_a_skipped_module_leaves_no_loss_or_metric_behind(
    plugin_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = PLUGIN_SOURCE.format(
        cls="Typo", name="typo_exp", register='EXPERIMENTS.register("typo_exp")(Typo)'
    ).replace('Task("b", "mse", "rmse"', 'Task("b", "user_l1", "user_max_eror"')
    module = plugin_path / "mtlsearch_test_plugin_typo.py"
    module.write_text(_with_user_loss(source))
    with caplog.at_level(logging.WARNING, logger="mtl_core.experiments._registry"):
        assert load_plugins(["mtlsearch_test_plugin_typo"]) == []
    assert "unknown metric 'user_max_eror'" in caplog.text
    assert "user_l1" not in LOSSES and "user_max_error" not in METRICS
    # Fixed, the same module loads: its names were free again.
    module.write_text(_with_user_loss(source.replace("user_max_eror", "user_max_error")))
    assert load_plugins(["mtlsearch_test_plugin_typo"]) == ["typo_exp"]
