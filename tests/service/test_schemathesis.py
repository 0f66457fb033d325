"""Property-based fuzzing of the REST API from its OpenAPI schema: no request reaches a 5xx.

Runs schemathesis against the real uvicorn server (tests/utils/server.py) on a SQLite file,
with the API token set and sent. No worker runs, so created studies stay queued.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Err

from tests.utils.server import start_server

logger = logging.getLogger(__name__)

TOKEN = "fuzz-token"
#: Examples per operation (hypothesis stops early where an operation has few inputs).
EXAMPLES_PER_OPERATION = 250

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = Path(tmp_path_factory.mktemp("fuzz")) / "fuzz.db"
    with start_server(f"sqlite:///{db}", token=TOKEN) as url:
        yield url


def test_no_request_reaches_a_server_error(base_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    sent: list[str] = []
    failures: list[str] = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):  # an operation the schema describes wrongly
            pytest.fail(f"invalid operation in the OpenAPI schema: {result.err()}")
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,
        )
        def fuzz(case: schemathesis.Case) -> None:
            sent.append(case.operation.label)
            response = case.call(base_url=base_url, headers=headers, timeout=30)
            if response.status_code >= 500:
                failures.append(
                    f"{case.operation.label} -> {response.status_code}: {case.as_curl_command()}"
                )

        fuzz()
    counts = Counter(sent)
    logger.info("schemathesis sent %d requests: %s", len(sent), dict(counts))
    assert not failures, "\n".join(failures[:20])
    assert len(sent) >= 1_000, f"only {len(sent)} requests"
