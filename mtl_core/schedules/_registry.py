"""The registry of training schedules."""

from __future__ import annotations

from typing import Any

from mtl_core.components import parse_config
from mtl_core.context import TaskContext
from mtl_core.registry import Registry
from mtl_core.schedules._base import Schedule

SCHEDULES: Registry[type[Schedule]] = Registry("schedule")


def build_schedule(name: str, params: dict[str, Any] | None, ctx: TaskContext) -> Schedule:
    cls = SCHEDULES.get(name)
    config = parse_config("schedule", name, cls.config_cls, params)
    return cls(config, ctx)


def list_schedules() -> list[str]:
    return SCHEDULES.names()
