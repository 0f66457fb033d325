"""Faults other than kills, with real processes: PostgreSQL restarted under a study, a worker
cut off from its database by the network, a database far away (`tests.e2e.faults`).

The database is a private cluster (`tests.utils.private_postgres`), never the shared server; the
network faults run a worker in a network namespace joined by a veth pair (`tests.utils.netns`)
whose link is cut; latency comes from a relay that holds every byte
(`tests.utils.delay_proxy`: this kernel has no ``netem``). Every study must end exact
(`tests.e2e.ledger`). Figures and commands: docs/reliability.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e import faults
from tests.e2e.faults import FaultRun
from tests.utils.private_postgres import PrivatePostgres, StopMode

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def assert_exact(run: FaultRun) -> None:
    assert run.ledger.exact, (run.ledger.lost, run.ledger.duplicated, run.ledger.stuck)
    assert run.exit_codes and set(run.exit_codes) == {0}, run.logs
    assert "Traceback" not in run.logs, run.logs


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_database_restart_mid_study_loses_and_repeats_nothing(
    private_postgres: PrivatePostgres, tmp_path: Path, mode: StopMode
) -> None:
    run = faults.restart(private_postgres, tmp_path, mode)
    assert_exact(run)
    assert run.ledger.lost_with_worker == 0  # back well within the grace: nobody was lost
    assert run.down_answer is not None
    seconds, status, body = run.down_answer
    assert status == 503 and "unreachable" in body and seconds < 5  # at once, never a hang
    assert "the database is unreachable" in run.logs
    assert "the database answers again" in run.logs


def test_a_worker_cut_off_for_less_than_the_grace_carries_on(tmp_path: Path) -> None:
    # A peer runs its maintenance during the cut: the victim is silent, not yet lost.
    run = faults.partition(tmp_path, cut_s=20, grace_s=60)
    assert_exact(run)
    assert run.ledger.lost_with_worker == 0, run.victim_log  # nobody took its trials
    assert run.victim_after, run.victim_log  # it went on training and recording after the cut


def test_a_worker_cut_off_longer_than_the_grace_has_its_late_results_refused(
    tmp_path: Path,
) -> None:
    run = faults.partition(tmp_path, cut_s=25, grace_s=6)
    assert_exact(run)
    assert run.ledger.lost_with_worker >= 1 and run.ledger.retries >= 1  # its peer took them
    assert "failed as lost by a peer meanwhile; its outcome is dropped" in run.victim_log
    assert run.victim_after, run.victim_log  # and it went on with new trials


def test_a_study_completes_with_50_ms_to_the_database(postgres_url: str, tmp_path: Path) -> None:
    run = faults.far_database(postgres_url, tmp_path, one_way_s=0.025)
    assert_exact(run)
