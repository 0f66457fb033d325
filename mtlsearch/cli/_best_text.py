"""`mtlsearch best --format text`: the study's answer for a person to read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _spread(value: Mapping[str, Any] | None) -> str:
    if not value:
        return "-"
    return f"{value['mean']:.4g} ± {value['sd']:.2g} (n={value['n']})"


def verdict_line(record: Mapping[str, Any]) -> str | None:
    """The verdict in words, or why there is none; None for a multi-objective answer."""
    confirmation = record.get("confirmation")
    if confirmation is None:
        return "not confirmed: the best is the single best search trial (seed luck included)"
    verdict = confirmation.get("verdict")
    return None if verdict is None else str(verdict["text"])


def architecture_line(config: Mapping[str, Any]) -> str | None:
    """``  architecture: ple (levels=2, shared_experts=1)``: what `build_model_from_best`
    builds; None for a record without one."""
    name = config.get("architecture")
    if not name:
        return None
    params = ", ".join(f"{k}={v}" for k, v in (config.get("architecture_params") or {}).items())
    return f"  architecture: {name}" + (f" ({params})" if params else "")


def best_text(record: Mapping[str, Any]) -> str:
    """The answer in lines: the configuration, its metrics (mean ± sd over the confirmation
    seeds when confirmed), uniform weights beside it, and the verdict."""
    lines: list[str] = []
    members = record.get("pareto") or [record]
    confirmation = record.get("confirmation")
    for member in members:
        lines.append(
            f"trial #{member.get('number')}: strategy {member.get('strategy')}, weights "
            + ", ".join(f"{t}={w:.3g}" for t, w in (member.get("weights_normalised") or {}).items())
        )
        architecture = architecture_line(member.get("config") or {})
        if architecture:
            lines.append(architecture)
        effective = member.get("effective_weights")
        if effective and member.get("strategy") != "fixed":
            applied = ", ".join(f"{t}={w:.3g}" for t, w in effective.items())
            lines.append(f"  weights applied (last epoch): {applied}")
        confirmed = member.get("confirmed")
        if confirmed:
            lines.append(f"  objective: {_spread(confirmed['objective'][0])}")
            for task, spread in confirmed["val_metrics"].items():
                lines.append(f"  {task} (val): {_spread(spread)}")
        else:
            lines.append(f"  objective: {member.get('values')}")
            for task, value in (member.get("val_metrics") or {}).items():
                lines.append(f"  {task} (val): {value:.4g}")
        for task, verdict in (member.get("verdict") or {}).items():
            lines.append(f"  {task} against uniform weights: {verdict['text']}")
    uniform = (confirmation or {}).get("uniform")
    if uniform:
        lines.append("uniform weights:")
        lines.append(f"  objective: {_spread(uniform['objective'][0])}")
        for task, spread in uniform["val_metrics"].items():
            lines.append(f"  {task} (val): {_spread(spread)}")
    if confirmation:
        lines.append(
            f"confirmation: {confirmation['complete']} of {confirmation['runs']} runs complete, "
            f"{confirmation['compute_s']:.0f} s of training"
        )
    verdict = verdict_line(record)
    if verdict:
        lines.append(f"verdict: {verdict}")
    return "\n".join(lines)


__all__ = ["architecture_line", "best_text", "verdict_line"]
