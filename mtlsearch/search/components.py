"""A study's component choices (strategy, schedule, architecture) and their searched parameters.

A choice's parameters are the ones the spec gives (fixed, a range or choices) plus, when the
choice asks for ``default_ranges``, every other parameter whose config field declares a
default range (`mtl_core.components.searched`, from the method's paper).
"""

from __future__ import annotations

from pydantic import BaseModel

from mtl_core.components import search_ranges
from mtlsearch.search.spec_values import ComponentChoice, ParamChoices, ParamRange, ParamSpec


def component_config(kind: str, name: str) -> type[BaseModel]:
    """The typed config class of the registered ``kind`` (strategy, schedule, architecture)."""
    if kind == "strategy":
        from mtl_core.weighting import STRATEGIES

        return STRATEGIES.get(name).config_cls
    if kind == "schedule":
        from mtl_core.schedules import SCHEDULES

        return SCHEDULES.get(name).config_cls
    from mtl_core.architectures import ARCHITECTURES

    return ARCHITECTURES.get(name).config_cls


def component_params(kind: str, choice: ComponentChoice) -> dict[str, ParamSpec]:
    """``choice``'s parameters as the study searches them: the given ones, then (with
    ``default_ranges``) the declared default range of each parameter not given."""
    params: dict[str, ParamSpec] = dict(choice.params)
    if not choice.default_ranges:
        return params
    for param, declared in search_ranges(component_config(kind, choice.name)).items():
        if param in params:
            continue
        if "choices" in declared:
            params[param] = ParamChoices(choices=declared["choices"])
        else:
            params[param] = ParamRange(
                low=declared["low"], high=declared["high"], log=declared["log"]
            )
    return params


__all__ = ["component_config", "component_params"]
