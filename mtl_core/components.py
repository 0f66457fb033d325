"""Shared helper to build a registered component from a name and a dict of parameters."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mtl_core.errors import ConfigError

C = TypeVar("C", bound=BaseModel)


def parse_config(kind: str, name: str, config_cls: type[C], params: dict[str, Any] | None) -> C:
    """Validate ``params`` against a component's config class.

    Raises `ConfigError` with one line naming the component, the bad parameter and what is
    allowed (the known parameters for an unknown key).
    """
    try:
        return config_cls.model_validate(params or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(params)"
        if err["type"] == "extra_forbidden":
            known = ", ".join(config_cls.model_fields) or "none"
            raise ConfigError(
                f"{kind} {name!r} has no parameter {field!r}; valid parameters: {known}"
            ) from None
        raise ConfigError(
            f"{kind} {name!r}: parameter {field!r} {err['msg'].lower()}, got {err.get('input')!r}"
        ) from None
