"""Experiments: tasks + data + network parts + training defaults, registered by name.

Built-ins: ``multi_mnist``, ``adult``, ``adult_mixed`` and ``synthetic``. User experiments
register through an entry point (group ``mtlsearch.experiments``) or a module the worker's
settings allow; see `load_plugins` and docs/experiments.md. A plugin imports what it
subclasses and returns from here (`Experiment`, `DataFile`, `DataShapes`, `DataSplits`,
`Split`, `NetworkParts`, `TrainingDefaults`) and its tasks, losses and metrics from
`mtl_core.tasks`.
"""

from mtl_core.architectures import NetworkParts
from mtl_core.experiments import adult, adult_mixed, multi_mnist, synthetic  # noqa: F401 - they register
from mtl_core.experiments._base import (
    DataFile,
    DataShapes,
    DataSplits,
    Experiment,
    ExperimentInfo,
    Split,
    TrainingDefaults,
)
from mtl_core.experiments._registry import (
    ENTRY_POINT_GROUP,
    EXPERIMENTS,
    describe_experiment,
    get_experiment,
    list_experiments,
    load_plugins,
    register_experiment,
)
from mtl_core.experiments.data import verify_files

__all__ = [
    "ENTRY_POINT_GROUP",
    "EXPERIMENTS",
    "DataFile",
    "DataShapes",
    "DataSplits",
    "Experiment",
    "ExperimentInfo",
    "NetworkParts",
    "Split",
    "TrainingDefaults",
    "describe_experiment",
    "get_experiment",
    "list_experiments",
    "load_plugins",
    "register_experiment",
    "verify_files",
]
