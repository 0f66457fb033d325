"""The plugin surface is importable from public modules, and the repository imports it there."""

from __future__ import annotations

import re
from pathlib import Path

import mtl_core.architectures
import mtl_core.experiments
import mtl_core.tasks

ROOT = Path(__file__).resolve().parents[3]
#: What docs/experiments.md tells a plugin author to import, and from where.
SURFACE = {
    mtl_core.experiments: [
        "DataFile",
        "DataShapes",
        "DataSplits",
        "Experiment",
        "NetworkParts",
        "Split",
        "TrainingDefaults",
        "load_plugins",
        "register_experiment",
    ],
    mtl_core.tasks: ["Task", "list_losses", "list_metrics", "register_loss", "register_metric"],
}
PRIVATE = re.compile(r"mtl_core\.(architectures|experiments|tasks)\._base\b")


def test_the_plugin_surface_is_public() -> None:
    for module, names in SURFACE.items():
        for name in names:
            assert name in module.__all__, f"{module.__name__}.{name}"
            assert hasattr(module, name), f"{module.__name__}.{name}"
    assert mtl_core.experiments.NetworkParts is mtl_core.architectures.NetworkParts


def test_nothing_outside_a_package_imports_its_private_base() -> None:
    offenders = []
    for folder in (
        "mtl_core",
        "mtlsearch",
        "service",
        "storage",
        "benchmarks",
        "examples",
        "tests",
    ):
        for path in (ROOT / folder).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            for match in PRIVATE.finditer(path.read_text(encoding="utf-8")):
                package = f"mtl_core/{match.group(1)}/"
                if not relative.startswith(package):
                    offenders.append(f"{relative}: {match.group(0)}")
    assert not offenders, offenders
