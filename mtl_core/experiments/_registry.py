"""The registry of experiments and the loading of user experiments (plugins).

Built-in experiments register themselves with ``@register_experiment`` when
`mtl_core.experiments` is imported. User experiments come from two places only, both chosen by
whoever runs the worker, never by a REST request:

1. entry points in the group ``mtlsearch.experiments`` of installed distributions
   (``name = "package.module:ExperimentClass"``; the entry-point name must equal the class's
   ``name``);
2. the modules named in the worker's local setting ``allowed_experiment_modules``; importing
   such a module registers its experiments with the decorator.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, TypeVar

from mtl_core.experiments._base import Experiment, ExperimentInfo
from mtl_core.experiments._checks import check_definition
from mtl_core.registry import Registry
from mtl_core.tasks import LOSSES, METRICS, build_metric

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mtlsearch.experiments"


class ExperimentRegistry(Registry[type[Experiment]]):
    """The experiment registry: each class is checked (`check_definition`) before it enters.

    Both ``@register_experiment`` and ``EXPERIMENTS.register(name)`` come through `add`, so a
    task with an unknown loss or network parts that do not match the tasks never register.
    """

    def add(self, name: str, obj: type[Experiment]) -> None:
        if name in self._entries and self._entries[name] is obj:
            return
        if isinstance(obj, type) and issubclass(obj, Experiment):
            check_definition(obj)
        super().add(name, obj)


EXPERIMENTS = ExperimentRegistry("experiment")

E = TypeVar("E", bound=type[Experiment])


def register_experiment(cls: E) -> E:
    """Class decorator: register an `Experiment` subclass under its ``name``."""
    if not (isinstance(cls, type) and issubclass(cls, Experiment)):
        raise TypeError(f"only Experiment subclasses can be registered, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str):
        raise TypeError(f"experiment class {cls.__qualname__} has no string `name`")
    EXPERIMENTS.add(name, cls)
    return cls


def get_experiment(name: str) -> Experiment:
    """A new instance of experiment ``name`` (with its default constructor arguments).

    Raises:
        UnknownNameError: ``name`` is not registered; the message lists the valid names.
    """
    return EXPERIMENTS.get(name)()


def list_experiments() -> list[str]:
    """The registered experiment names, sorted."""
    return EXPERIMENTS.names()


def describe_experiment(name: str) -> ExperimentInfo:
    """A plain description of experiment ``name`` for the CLI and the REST API."""
    cls = EXPERIMENTS.get(name)
    tasks: list[dict[str, object]] = [
        {
            "name": task.name,
            "loss": task.loss,
            "metric": task.metric,
            "higher_is_better": build_metric(task.metric).higher_is_better,
            "output_dim": task.output_dim,
            "extra_metrics": list(task.extra_metrics),
        }
        for task in cls.tasks
    ]
    return ExperimentInfo(
        name=name, description=cls.description, tasks=tasks, defaults=asdict(cls.defaults)
    )


def _is_module_path(value: str) -> bool:
    return bool(value) and all(part.isidentifier() for part in value.split("."))


class _Snapshot:
    """The names in the experiment, loss and metric registries before a plugin is imported.

    Importing a plugin module may register experiments, losses and metrics before it fails;
    a plugin that is skipped must leave none of them behind.
    """

    def __init__(self) -> None:
        self.registries: tuple[Registry[Any], ...] = (EXPERIMENTS, LOSSES, METRICS)
        self.names = [set(registry.names()) for registry in self.registries]

    def rollback(self) -> None:
        for registry, before in zip(self.registries, self.names, strict=True):
            for name in set(registry.names()) - before:
                registry.remove(name)


def _load_entry_points() -> list[str]:
    loaded: list[str] = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        label = f"entry point {entry_point.name!r} ({entry_point.value})"
        snapshot = _Snapshot()
        try:
            obj = entry_point.load()
            if not (isinstance(obj, type) and issubclass(obj, Experiment)):
                raise TypeError(f"it loads {obj!r}, not an Experiment subclass")
            class_name = getattr(obj, "name", None)
            if class_name != entry_point.name:
                raise ValueError(
                    f"the entry-point name must equal the class's `name` {class_name!r}"
                )
            register_experiment(obj)
        except Exception as exc:
            snapshot.rollback()
            logger.warning("experiment plugin %s not registered: %s", label, exc)
            continue
        loaded.append(entry_point.name)
    return loaded


def _import_allowed_module(module: str) -> bool:
    if not _is_module_path(module):
        logger.warning("skipping experiment module %r: not a dotted Python module path", module)
        return False
    already_imported = module in sys.modules
    snapshot = _Snapshot()
    before = set(EXPERIMENTS.names())
    try:
        importlib.import_module(module)
    except Exception as exc:
        if not already_imported:  # what it registered before failing goes too
            snapshot.rollback()
        logger.warning("skipping experiment module %r: %s: %s", module, type(exc).__name__, exc)
        return False
    if not already_imported and set(EXPERIMENTS.names()) == before:
        logger.warning("experiment module %r registered no experiment", module)
    return True


def load_plugins(allowed_modules: Sequence[str] = ()) -> list[str]:
    """Register user experiments from entry points and from the allowed modules.

    Safe to call more than once: an entry already registered with the same class, or a module
    already imported, changes nothing. A plugin that fails to load is logged as a warning that
    names it and is skipped; the others still load.

    Args:
        allowed_modules: dotted module paths to import, from the worker's local setting
            ``Settings.allowed_experiment_modules``. Never pass a value taken from a request.

    Returns:
        The experiment names registered by this call (empty when nothing new was found).
    """
    if isinstance(allowed_modules, str):  # a lone string would be imported letter by letter
        allowed_modules = [allowed_modules]
    before = set(EXPERIMENTS.names())
    entry_points = _load_entry_points()
    modules = [m for m in allowed_modules if _import_allowed_module(m)]
    added = sorted(set(EXPERIMENTS.names()) - before)
    if added:
        logger.info(
            "registered experiments %s (entry points: %s; modules: %s)",
            ", ".join(added),
            ", ".join(entry_points) or "none",
            ", ".join(modules) or "none",
        )
    return added


__all__ = [
    "ENTRY_POINT_GROUP",
    "EXPERIMENTS",
    "describe_experiment",
    "get_experiment",
    "list_experiments",
    "load_plugins",
    "register_experiment",
]
