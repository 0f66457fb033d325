"""The table of ``mtlsearch status``: one row per study, fitted to the terminal's width.

The id (what the next command needs), the name, the status, the trials done and the best value
are always shown, never cropped: the id, status, trials and best value never wrap, and a name
too long for the width wraps onto further lines rather than losing its end. The other columns
(running trials, experiment, failed trials) are left out, least needed first, while the table
would be wider than the console at its natural width, a name counting as `NAME_FITS`
characters at most (one long name wraps rather than hide a column from every row); a caption
says which, and ``mtlsearch status ID`` shows one study whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

#: Columns left out, in this order, until the table fits: the least needed first.
OPTIONAL_COLUMNS = ("running", "experiment", "failed")
#: The most characters of a name that the choice of columns makes room for.
NAME_FITS = 24
_UNBOUNDED = 100_000


def format_value(value: Any) -> str:
    """A cell: ``-`` for None, 4 significant digits for a float."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trials_done(study: dict[str, Any]) -> str:
    """Complete and pruned trials, over the budget when there is one (``41/200``)."""
    trials = study.get("trials") or {}
    done = int(trials.get("complete", 0)) + int(trials.get("pruned", 0))
    budget = study.get("n_trials")
    return f"{done}/{budget}" if budget is not None else str(done)


@dataclass(frozen=True)
class _Column:
    header: str
    cell: Callable[[dict[str, Any]], str]
    justify: Literal["left", "right"] = "left"
    wraps: bool = False


def _count(state: str) -> Callable[[dict[str, Any]], str]:
    return lambda study: str((study.get("trials") or {}).get(state, 0))


_COLUMNS = (
    _Column("id", lambda s: str(s["id"])),
    _Column("name", lambda s: escape(s["name"]), wraps=True),
    _Column("experiment", lambda s: escape(s["experiment"]), wraps=True),
    _Column("status", lambda s: str(s["status"])),
    _Column("trials", trials_done, justify="right"),
    _Column("running", _count("running"), justify="right"),
    _Column("failed", _count("fail"), justify="right"),
    _Column("best", lambda s: format_value(s.get("best_value")), justify="right"),
)


def _table(
    studies: Sequence[dict[str, Any]], hidden: Sequence[str], name_width: int | None = None
) -> Table:
    columns = [column for column in _COLUMNS if column.header not in hidden]
    # No borders: two spaces between columns leave the width to the values.
    table = Table(box=None, pad_edge=False, caption_justify="left", caption_style="dim")
    for column in columns:
        table.add_column(
            column.header,
            justify=column.justify,
            no_wrap=not column.wraps,
            overflow="fold",  # wrap inside a long word rather than end it with an ellipsis
            min_width=len(column.header),
            max_width=name_width if column.header == "name" else None,
        )
    for study in studies:
        table.add_row(*(column.cell(study) for column in columns))
    return table


def _fits(console: Console, studies: Sequence[dict[str, Any]], hidden: Sequence[str]) -> bool:
    table = _table(studies, hidden, name_width=NAME_FITS)
    options = console.options.update_width(_UNBOUNDED)
    return Measurement.get(console, options, table).maximum <= console.width


def studies_table(studies: Sequence[dict[str, Any]], console: Console) -> Table:
    """The studies as a table that fits ``console.width``, see the module's docstring."""
    hidden: tuple[str, ...] = ()
    for n in range(len(OPTIONAL_COLUMNS) + 1):
        hidden = OPTIONAL_COLUMNS[:n]
        if _fits(console, studies, hidden):
            break
    table = _table(studies, hidden)
    if hidden:
        table.caption = (
            f"hidden at {console.width} columns: {', '.join(hidden)} (see mtlsearch status ID)"
        )
    return table


__all__ = ["NAME_FITS", "OPTIONAL_COLUMNS", "format_value", "studies_table", "trials_done"]
