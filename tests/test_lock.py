"""requirements.lock matches pyproject.toml: every declared dependency is pinned and hashed.

`make run` and `make test` install from the lock alone (``pip install --require-hashes
--no-deps``), so a dependency added to pyproject.toml without `make lock` would be missing at
run time, and one whose range no longer admits its pin would be installed anyway. Both fail here.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)")


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    return [Requirement(line) for line in lines]


def _pins(text: str) -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in text.splitlines():
        match = PIN.match(line)
        if match:
            pins[canonicalize_name(match.group(1))] = Version(match.group(2))
    return pins


def _mismatches(declared: list[Requirement], pins: dict[str, Version]) -> list[str]:
    problems = []
    for req in declared:
        version = pins.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"{req.name} is declared but not in requirements.lock")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}=={version} in the lock is outside {req}")
    return problems


def test_lock_pins_every_declared_dependency_within_its_range() -> None:
    pins = _pins((ROOT / "requirements.lock").read_text())
    problems = _mismatches(_declared(), pins)
    assert not problems, "; ".join(problems) + " (run `make lock`)"


def test_every_pin_has_a_hash() -> None:
    blocks = re.split(r"\n(?=[A-Za-z0-9_.\-]+==)", (ROOT / "requirements.lock").read_text())
    unhashed = [b.split()[0] for b in blocks if PIN.match(b) and "--hash=sha256:" not in b]
    assert not unhashed


def test_torch_is_the_cpu_build() -> None:
    assert str(_pins((ROOT / "requirements.lock").read_text())["torch"]).endswith("+cpu")


@pytest.mark.parametrize(
    ("declared", "lock", "expected"),
    [
        ("optuna>=5,<6", "optuna==6.0.0", "outside"),
        ("newpkg>=1", "optuna==5.1.0", "not in requirements.lock"),
    ],
)
def test_a_stale_lock_is_detected(declared: str, lock: str, expected: str) -> None:
    problems = _mismatches([Requirement(declared)], _pins(lock))
    assert len(problems) == 1 and expected in problems[0]
