"""The import contracts of pyproject.toml's ``[tool.importlinter]`` hold (``lint-imports``).

The layers read top-down, ``mtl_core`` <- ``storage`` <- search <- settings <- {``service``,
worker} <- client <- CLI; `make test` runs the same check, this test makes `pytest` alone catch a
broken layer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> str:
    beside = Path(sys.executable).with_name("lint-imports")
    if beside.exists():
        return str(beside)
    found = shutil.which("lint-imports")
    if found is None:
        pytest.fail("lint-imports is not installed (it is a dev dependency: import-linter)")
    return found


def test_import_contracts_are_kept() -> None:
    # This checkout's packages, not whichever ones the environment has installed.
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [_lint_imports(), "--no-cache", "--no-logo"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": pythonpath},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
