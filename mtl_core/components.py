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


#: Key of a config field's ``json_schema_extra`` that holds its default search range.
SEARCHED_KEY = "searched"


def searched(
    low: float | None = None,
    high: float | None = None,
    *,
    log: bool = False,
    choices: list[Any] | None = None,
) -> dict[str, Any]:
    """A config field's default search range, for ``Field(..., json_schema_extra=...)``.

    Either ``low``/``high`` (``log`` for a log-uniform range) or ``choices``. A study that
    asks for a component's default ranges searches its fields over these; a field without
    one keeps its default. The ranges come from the component's paper (its docstring says).
    """
    if choices is not None:
        if low is not None or high is not None or not choices:
            raise ValueError("give either low and high, or a non-empty list of choices")
        return {SEARCHED_KEY: {"choices": list(choices)}}
    if low is None or high is None or not low < high or (log and low <= 0):
        raise ValueError(f"need low < high (and low > 0 for log), got {low=}, {high=}")
    return {SEARCHED_KEY: {"low": low, "high": high, "log": log}}


def search_ranges(config_cls: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """Field name → its default search range (`searched`), for the fields that declare one."""
    ranges: dict[str, dict[str, Any]] = {}
    for name, field in config_cls.model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and SEARCHED_KEY in extra:
            ranges[name] = dict(extra[SEARCHED_KEY])  # type: ignore[arg-type]
    return ranges
