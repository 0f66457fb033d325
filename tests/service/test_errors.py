"""The one translation of domain errors into HTTP statuses and one-line messages."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi import Request
from fastapi.exceptions import RequestValidationError

from mtlsearch.search.spec import SpecError
from service.errors import (
    AuthenticationError,
    ConflictError,
    describe_errors,
    status_for,
    validation_error_handler,
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


def _request() -> Request:
    return Request({"type": "http", "method": "POST", "path": "/api/v1/studies", "headers": []})


def test_the_422_handler_drops_input_and_makes_ctx_json_safe() -> None:
    errors = [
        {
            "type": "greater_than",
            "loc": ("body", "n_trials"),
            "msg": "Input should be greater than 0",
            "input": float("nan"),
            "ctx": {"gt": float("inf"), "error": ValueError("bad")},
        },
        {"type": "extra_forbidden", "loc": ("body", "junk"), "msg": "x", "input": "x" * 10**6},
    ]
    response = asyncio.run(validation_error_handler(_request(), RequestValidationError(errors)))
    assert response.status_code == 422
    body = json.loads(bytes(response.body))
    assert len(response.body) < 1000
    assert all("input" not in err for err in body["detail"])
    assert body["detail"][0]["ctx"] == {"gt": "inf", "error": "bad"}
    assert body["message"] == "n_trials: Input should be greater than 0"


def test_the_422_handler_never_raises() -> None:
    response = asyncio.run(validation_error_handler(_request(), RuntimeError("not a 422")))
    assert response.status_code == 422
