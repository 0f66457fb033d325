"""The experiments this server accepts: built-ins, entry points and the allowed modules."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mtl_core.experiments import describe_experiment, list_experiments, load_plugins
from service.schemas.experiments import ExperimentPublic, ExperimentsPublic, TaskPublic

logger = logging.getLogger(__name__)


def load_experiments(allowed_modules: Sequence[str]) -> list[str]:
    """Register plugin experiments (entry points and `allowed_modules`, from the server's own
    settings, never from a request); return every registered name."""
    load_plugins(list(allowed_modules))
    names = list_experiments()
    logger.info("experiments: %s", ", ".join(names))
    return names


def list_experiment_infos() -> ExperimentsPublic:
    """Every registered experiment with its tasks and training defaults."""
    data = []
    for name in list_experiments():
        info = describe_experiment(name)
        data.append(
            ExperimentPublic(
                name=info.name,
                description=info.description,
                tasks=[TaskPublic.model_validate(task) for task in info.tasks],
                defaults=dict(info.defaults),
            )
        )
    return ExperimentsPublic(data=data, count=len(data))


__all__ = ["list_experiment_infos", "load_experiments"]
