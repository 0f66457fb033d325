"""The one translation of domain errors into HTTP statuses and one-line messages."""

from __future__ import annotations

import pytest

from mtlsearch.search.spec import SpecError
from service.errors import (
    AuthenticationError,
    ConflictError,
    describe_errors,
    status_for,
)
from storage import NotFoundError, StorageError, StudyExistsError


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotFoundError("no study"), 404),
        (StudyExistsError("taken"), 409),
        (ConflictError("finished"), 409),
        (SpecError("experiment", "unknown"), 422),
        (AuthenticationError("missing"), 401),
        (StorageError("down"), 503),
        (RuntimeError("bug"), 500),
    ],
)
def test_status_for(error: Exception, status: int) -> None:
    assert status_for(error) == status


def test_describe_errors_reads_malformed_json() -> None:
    errors = [
        {
            "type": "json_invalid",
            "loc": ("body", 12),
            "msg": "JSON decode error",
            "ctx": {"error": "Expecting value"},
        }
    ]
    assert (
        describe_errors(errors)
        == "the request body is not valid JSON: Expecting value at position 12"
    )


def test_describe_errors_names_the_field() -> None:
    errors = [
        {
            "type": "value_error",
            "loc": ("body", "search_space", "weights", "a", "range"),
            "msg": "Value error, hi must be >= lo, got lo=5.0, hi=1.0",
        }
    ]
    assert (
        describe_errors(errors)
        == "search_space.weights.a.range: hi must be >= lo, got lo=5.0, hi=1.0"
    )


def test_describe_errors_keeps_a_root_message_with_its_own_path() -> None:
    errors = [{"type": "value_error", "loc": ("body",), "msg": "Value error, n_trials: give one"}]
    assert describe_errors(errors) == "n_trials: give one"
