"""benchmarks/strategy_cost.py run for real at tiny sizes (adult, K = 1 and 2, 1 and 2 steps):
its rows, its ratios to `fixed`, the rows of strategies that cannot train, and its section of
docs/benchmarks.md."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import strategy_cost

from mtl_core.weighting import list_strategies

TINY = ["--experiments", "adult", "--ks", "1", "2", "--steps", "1", "2", "--repeat", "1"]
TITLE = "## Strategy cost (cpu)"


def rows(output: str) -> dict[tuple[int, str], list[str]]:
    """The table's rows keyed by (K, strategy): [ms / step, ms / step / trial, vs fixed, note]."""
    found: dict[tuple[int, str], list[str]] = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0] == "adult":
            found[(int(cells[1]), cells[2])] = cells[3:]
    return found


def run(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> dict[tuple[int, str], list[str]]:
    """The script's main as its command line runs it (the section records that line)."""
    monkeypatch.setattr(sys, "argv", ["benchmarks/strategy_cost.py", *argv])
    strategy_cost.main()
    return rows(capsys.readouterr().out)


def test_every_strategy_is_timed_against_fixed(
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = tmp_path / "benchmarks.md"
    argv = [*TINY, "--strategies", "mgda", "--data-dir", str(data_dir)]
    table = run([*argv, "--no-write", "--docs", str(docs)], capsys, monkeypatch)

    # fixed is always measured (the others' reference), first in each K.
    assert set(table) == {(1, "fixed"), (1, "mgda"), (2, "fixed"), (2, "mgda")}
    for k in (1, 2):
        fixed_ms, fixed_trial, fixed_ratio, _ = table[(k, "fixed")]
        mgda_ms, mgda_trial, mgda_ratio, _ = table[(k, "mgda")]
        for ms, per_trial in ((fixed_ms, fixed_trial), (mgda_ms, mgda_trial)):
            assert float(per_trial) == pytest.approx(float(ms) / k, abs=1e-3)
        if float(fixed_ms) <= 0:  # a loaded machine: the difference drowned in noise
            continue
        assert fixed_ratio == "1.00x"
        expected = float(mgda_ms) / float(fixed_ms)
        assert float(mgda_ratio.removesuffix("x")) == pytest.approx(expected, rel=0.02, abs=0.01)
    assert not docs.exists()  # --no-write


def test_a_strategy_that_cannot_train_is_a_row_and_the_section_is_written(
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = tmp_path / "benchmarks.md"
    shutil.copy(strategy_cost.BENCHMARKS_MD, docs)
    before = docs.read_text()
    argv = [*TINY, "--strategies", "mgda", "dwa", "--architecture", "soft"]
    table = run([*argv, "--data-dir", str(data_dir), "--docs", str(docs)], capsys, monkeypatch)

    # The soft architecture shares no parameter: MGDA cannot run, the others still do.
    for k in (1, 2):
        assert table[(k, "mgda")][:3] == ["—", "—", "—"]
        assert "not run: needs shared parameters" in table[(k, "mgda")][3]
        for name in ("fixed", "dwa"):
            float(table[(k, name)][0])

    after = docs.read_text()
    assert after.count(TITLE) == 1
    section = after[after.index(TITLE) :]
    assert "Command: `python benchmarks/strategy_cost.py --experiments adult" in section
    assert "--architecture soft" in section
    assert rows(section) == table
    # Every other section is left as it was.
    for other in re.findall(r"^## .*$", before, re.M):
        if other != TITLE:
            start = before.index(other)
            nxt = before.find("\n## ", start + 1)
            body = before[start : nxt if nxt >= 0 else None].rstrip("\n")
            assert body in after


def test_strategies_default_to_the_registry_with_fixed_first(data_dir: Path) -> None:
    args = strategy_cost.parse_args(["--data-dir", str(data_dir)])
    assert args.strategies[0] == "fixed"
    assert sorted(args.strategies) == list_strategies()
    assert args.ks == [1, 64] and args.experiments == ["adult", "multi_mnist"]


@pytest.mark.parametrize(
    "argv",
    [["--strategies", "no_such"], ["--steps", "3", "3"], ["--ks", "0"], ["--repeat", "0"]],
)
def test_bad_arguments_are_refused(
    argv: list[str], data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        strategy_cost.parse_args([*argv, "--data-dir", str(data_dir)])
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err
