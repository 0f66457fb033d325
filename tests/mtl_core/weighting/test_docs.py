"""docs/strategies.md describes the registered strategies as the code declares them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mtl_core.components import search_ranges
from mtl_core.weighting import STRATEGIES, list_strategies, parse_strategy_config

DOC = (Path(__file__).resolve().parents[3] / "docs" / "strategies.md").read_text()


def _section(name: str) -> str:
    match = re.search(rf"^## {re.escape(name)}\n(.*?)(?=^## |\Z)", DOC, re.M | re.S)
    assert match, f"docs/strategies.md has no section '## {name}'"
    return match.group(1)


def _number(text: str) -> float:
    return float(text.replace("−", "-").strip())


@pytest.mark.parametrize("name", list_strategies())
def test_each_parameter_has_a_row_with_its_searched_range(name: str) -> None:
    section = _section(name)
    config_cls = STRATEGIES.get(name).config_cls
    ranges = search_ranges(config_cls)
    for param in config_cls.model_fields:
        rows = re.findall(rf"^\| `{param}` \|.*\|\s*([^|]*?)\s*\|$", section, re.M)
        assert len(rows) == 1, f"{name}: no (or several) rows for `{param}`"
        cell = rows[0].split("(")[0].strip()
        declared = ranges.get(param)
        if declared is None:
            assert cell == "—", f"{name}.{param} is not searched; its cell says {cell!r}"
        elif "choices" in declared:
            expected = ", ".join(str(c).lower() for c in declared["choices"])
            assert cell == expected, f"{name}.{param}: {cell!r} != {expected!r}"
        else:
            low, high = cell.removesuffix(" log").split("–")
            assert (_number(low), _number(high)) == (declared["low"], declared["high"]), cell
            assert cell.endswith(" log") == declared["log"], f"{name}.{param}: {cell!r}"


#: The overview table's words for each gradient space.
WORKS_ON = {
    "loss": "losses",
    "parameters": "task gradients, shared parameters",
    "representation": "task gradients, representation",
}


def test_the_overview_lists_every_strategy_with_what_it_works_on() -> None:
    rows = dict(
        re.findall(r"^\| `(\w+)` \| (losses[a-z\-, ]*|task gradients, [a-z0-9, ]+) \|", DOC, re.M)
    )
    expected = {}
    for name in list_strategies():
        cls = STRATEGIES.get(name)
        words = WORKS_ON[cls.gradient_space(parse_strategy_config(name, {}))]
        if cls.batches_per_step > 1:
            words += f", {cls.batches_per_step} batches per step"
        if cls.reads_validation:
            words += ", validation look-ahead"
        expected[name] = words
    assert rows == expected
