"""`mtlsearch train --from-trial STUDY/NUMBER`: retrain a study's trial alone, exactly.

The trial's record comes from the server (`Client.trial`); `mtl_core.retrain_trial` retrains
it in a pass of the K it trained in, and this module prints its metrics beside the recorded
ones and says whether they are identical. The exit code is 1 when an exact reproduction was
expected (K known, both runs on the CPU) and a metric differs.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from mtlsearch.cli._app import console, fail
from mtlsearch.client import Client, ClientError

#: ``STUDY/NUMBER``: a study id and a trial number.
_REFERENCE = re.compile(r"^(?P<study>[^/\s]+)/(?P<number>\d+)$")

#: The ``train`` options that build a config; the record gives the config instead.
CONFIG_OPTIONS = (
    "experiment",
    "strategy",
    "param",
    "weights",
    "schedule",
    "schedule_param",
    "architecture",
    "arch_param",
    "optimizer",
    "lr",
    "epochs",
    "batch_size",
    "grad_clip",
    "seed",
    "max_train_samples",
)


def parse_reference(reference: str) -> tuple[str, int]:
    """``("3fa9c1d2e4b5", 12)`` of ``"3fa9c1d2e4b5/12"``; a one-line error otherwise."""
    match = _REFERENCE.match(reference.strip())
    if match is None:
        raise fail(
            f"--from-trial must be STUDY/NUMBER (a study id and a trial number, e.g. "
            f"3fa9c1d2e4b5/12), got {reference!r}"
        )
    return match["study"], int(match["number"])


def retrain_from_trial(
    reference: str,
    *,
    url: str | None,
    token: str | None,
    device: str,
    data_dir: Path | None,
    as_json: bool,
) -> None:
    """Fetch the trial's record, retrain it, print both; exit 1 when an exact reproduction
    was expected and a metric differs."""
    from mtl_core.errors import MTLError
    from mtl_core.experiments import load_plugins
    from mtl_core.registry import UnknownNameError
    from mtl_core.reproduce import retrain_trial
    from mtlsearch.settings import get_settings

    study_id, number = parse_reference(reference)
    settings = get_settings()
    try:
        with Client(url=url, token=token) as client:
            record = client.trial(study_id, number)
    except ClientError as exc:
        raise fail(escape(str(exc))) from None
    load_plugins(settings.allowed_experiment_modules)
    try:
        reproduction = retrain_trial(
            record, data_dir or settings.data_dir, device=device, progress=not as_json
        )
    except (UnknownNameError, MTLError) as exc:
        raise fail(escape(str(exc))) from None
    identical = reproduction.identical
    summary = {
        "study": study_id,
        "number": number,
        "num_slots": reproduction.num_slots,
        "seed": reproduction.result.config.seed,
        "data_seed": reproduction.result.config.data_seed,
        "device": device,
        "exact_expected": reproduction.exact_expected,
        "identical": identical,
        "note": reproduction.note,
        "metrics": [
            {"metric": name, "recorded": recorded, "retrained": _json_number(retrained)}
            for name, recorded, retrained in reproduction.pairs()
        ],
        "differences": reproduction.differences(),
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print(summary, reproduction.pairs())
    if reproduction.exact_expected and not identical:
        raise typer.Exit(1)


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _print(summary: dict[str, Any], pairs: list[tuple[str, float | None, float]]) -> None:
    title = (
        f"trial {summary['study']}/{summary['number']} retrained alone: K={summary['num_slots']}, "
        f"seed {summary['seed']}, data_seed {summary['data_seed']}, on {summary['device']}"
    )
    table = Table(title=escape(title))
    for column in ("metric", "recorded", "retrained", "same"):
        table.add_column(column)
    for name, recorded, retrained in pairs:
        same = (recorded is None and not math.isfinite(retrained)) or recorded == retrained
        table.add_row(name, repr(recorded), repr(retrained), "yes" if same else "[red]no[/]")
    console.print(table)
    import torch

    runtime = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    if summary["identical"]:
        verdict = "identical: every recorded validation and test metric, bit for bit"
    else:
        worst = max(summary["differences"].values())
        verdict = f"different: the largest |recorded - retrained| is {worst:.3g}"
        if summary["exact_expected"]:
            verdict += (
                f"; an exact reproduction needs the worker's torch version and thread count "
                f"(here {runtime})"
            )
    console.print(escape(verdict), highlight=False, soft_wrap=True)
    if summary["note"]:
        console.print(escape(f"note: {summary['note']}"), highlight=False, soft_wrap=True)


__all__ = ["CONFIG_OPTIONS", "parse_reference", "retrain_from_trial"]
