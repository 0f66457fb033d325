"""A small Python client of the mtlsearch REST API (``/api/v1``).

    from mtlsearch.client import Client
    from mtl_core import build_loss_from_best

    client = Client("http://127.0.0.1:8000", token=None)   # default: Settings.api_url/api_token
    study = client.submit("examples/adult-study.yaml")
    client.wait(study["id"], timeout=3600)
    failures = client.trials(study["id"], state="fail")["data"]
    loss = build_loss_from_best(client.best(study["id"]))

    # One trial's record, and that trial retrained alone, exactly (torch is imported here):
    from mtl_core import retrain_trial, trial_config_from_record

    record = client.trial(study["id"], 12)
    config = trial_config_from_record(record)        # its TrialConfig, seeds included
    reproduction = retrain_trial(record)             # BatchedRun([config], num_slots=K), CPU
    assert reproduction.identical, reproduction.differences()

Every method returns the server's JSON (dicts and lists). An HTTP error or an unreachable
server raises `ClientError` with the server's one-line message and the status code; an
argument the API cannot accept (an unknown trial state, ``poll_s <= 0``) raises `ValueError`
before any request.

Importing this module stays light (httpx and PyYAML, no torch, SQLAlchemy or Optuna): a
script that only talks to a server does not pay for the training stack. The settings (for the
default URL and token) are read when a `Client` is built, and `StudySpec` is only looked at
when one is passed, so both are imported where they are used.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx
import yaml

if TYPE_CHECKING:
    from mtlsearch.search.spec import StudySpec

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT_S = 30.0
TERMINAL_STATUSES = frozenset({"completed", "cancelled", "failed"})
#: The study statuses ``GET /studies?status=`` accepts (the API's `StudyStatusName`).
STUDY_STATUSES = ("running", "completed", "cancelled", "failed")
#: The trial states ``GET /studies/{id}/trials?state=`` accepts (the API's `TrialStateName`).
TRIAL_STATES = ("running", "waiting", "complete", "pruned", "fail")


class ClientError(Exception):
    """A failed API call: the server's one-line message and its HTTP status (None when the
    server could not be reached or answered garbage)."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code

    def __str__(self) -> str:
        return (
            self.message
            if self.status_code is None
            else f"{self.message} (HTTP {self.status_code})"
        )


def load_spec_file(path: Path | str) -> dict[str, Any]:
    """Read a study spec from a YAML or JSON file (JSON is YAML too).

    Raises:
        ClientError: the file cannot be read or is not a mapping.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ClientError(f"cannot read spec file {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ClientError(f"spec file {path}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ClientError(
            f"spec file {path}: expected a mapping of spec fields, got {type(data).__name__}"
        )
    return data


def _checked(what: str, names: list[str], valid: tuple[str, ...]) -> list[str]:
    """`names`, each of them one of `valid`; ValueError naming the first that is not."""
    for name in names:
        if name not in valid:
            raise ValueError(f"{what} must be one of {', '.join(valid)}, got {name!r}")
    return names


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, ValueError):
        text = response.text.strip().splitlines()
        return text[0] if text else response.reason_phrase or "error"
    if isinstance(body, dict):
        # Our validation errors carry a readable `message`; domain errors a `detail` line.
        for key in ("message", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
        detail = body.get("detail")
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            loc = ".".join(str(p) for p in detail[0].get("loc", ()) if p != "body")
            return f"{loc}: {detail[0].get('msg', 'invalid')}" if loc else str(detail[0])
    return response.reason_phrase or "error"


class Client:
    """Talks to one mtlsearch server.

    Args:
        url: the server's base URL (default ``Settings.api_url``).
        token: bearer token for mutating calls (default ``Settings.api_token``).
        timeout: seconds per request.
        transport: an httpx transport (tests).
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if url is None or token is None:
            from mtlsearch.settings import get_settings

            settings = get_settings()
            url = url or settings.api_url
            token = token if token is not None else settings.api_token
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.url + API_PREFIX, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        """Close the HTTP connections; ``with Client(...) as client:`` does it on exit."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ClientError(f"{self.url} did not answer {method} {path} in time") from None
        except httpx.TransportError as exc:
            raise ClientError(f"cannot reach the mtlsearch server at {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise ClientError(_message(response), response.status_code)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except (json.JSONDecodeError, ValueError):
            raise ClientError(
                f"{self.url} answered {method} {path} with something that is not JSON",
                response.status_code,
            ) from None

    # --- studies ---------------------------------------------------------------------------

    def submit(self, spec: Mapping[str, Any] | StudySpec | Path | str) -> dict[str, Any]:
        """Create a study (``POST /studies``); workers start on it at once.

        Args:
            spec: the study spec (docs/study-spec.md): a mapping, a `StudySpec`, or the path
                of a YAML or JSON file.

        Returns:
            The new study (``StudyPublic``): ``id``, ``status``, ``dashboard_url``, the spec
            with its defaults filled in, ...

        Raises:
            ClientError: the file cannot be read, the spec is invalid (422, naming the field),
                a study of that name exists (409), the token is missing or wrong (401).
        """
        if isinstance(spec, Path | str):
            body: Any = load_spec_file(spec)
        elif isinstance(spec, Mapping):
            body = dict(spec)
        else:
            # A StudySpec: its module is loaded already, since the caller built one.
            from mtlsearch.search.spec import StudySpec

            if not isinstance(spec, StudySpec):
                raise TypeError(
                    f"spec must be a mapping, a StudySpec or a file path, got {type(spec).__name__}"
                )
            body = spec.model_dump(mode="json", exclude_unset=True)
        result: dict[str, Any] = self._call("POST", "/studies", json=body)
        return result

    def list(
        self, offset: int = 0, limit: int = 50, status: str | None = None
    ) -> builtins.list[Any]:
        """One page of studies, newest first (``GET /studies``).

        Args:
            offset: studies to skip.
            limit: page size, 1..1000.
            status: only studies in this status: one of `STUDY_STATUSES`.

        Returns:
            The studies (``StudyPublic`` each); the page's ``count`` is dropped.

        Raises:
            ValueError: ``status`` is not a study status.
            ClientError: the server refused or could not be reached.
        """
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if status is not None:
            params["status"] = _checked("status", [status], STUDY_STATUSES)[0]
        page = self._call("GET", "/studies", params=params)
        return list(page["data"])

    def status(self, study_id: str) -> dict[str, Any]:
        """One study (``GET /studies/{id}``): status, trial counts by state, progress, best
        value (or Pareto size), dashboard URL, spec.

        Raises:
            ClientError: no such study (404), or the server failed.
        """
        result: dict[str, Any] = self._call("GET", f"/studies/{study_id}")
        return result

    def trials(
        self,
        study_id: str,
        offset: int = 0,
        limit: int = 100,
        state: str | Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """One page of the study's trials by number (``GET /studies/{id}/trials``).

        Args:
            study_id: the study.
            offset: trials to skip.
            limit: page size, 1..1000.
            state: only trials in this state, or in any of these states: names from
                `TRIAL_STATES` (``"fail"``, ``["fail", "pruned"]``). None: every trial.

        Returns:
            ``{"data": [...], "count": N}``: each trial's state, values, params, config,
            metrics, ``population`` (a population member's weight trajectory and lineage,
            else None) and ``fail_reason``; ``count`` is the number of matching trials.

        Raises:
            ValueError: a state the API does not know, or none (before any request).
            ClientError: no such study (404), or the server failed.
        """
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if state is not None:
            names = [state] if isinstance(state, str) else builtins.list(state)
            if not names:
                raise ValueError("state must name at least one state, got none; None: every trial")
            params["state"] = _checked("state", names, TRIAL_STATES)
        result: dict[str, Any] = self._call("GET", f"/studies/{study_id}/trials", params=params)
        return result

    def trial(self, study_id: str, number: int) -> dict[str, Any]:
        """One trial of the study (``GET /studies/{id}/trials/{number}``), as in `trials`.

        Its record holds what determines its run: ``config`` (with ``seed`` and
        ``data_seed``) and ``num_slots``, the K of the batched pass it trained in (None for a
        trial recorded before it was kept); the weights its strategy applied
        (``strategy_weights``, ``weights_trajectory``); and, for a trial trained in a
        population, ``population``: the fixed weights it trained with by epoch
        (``trajectory``) and whose training state it took (``lineage``), so its config alone
        does not retrain it. Rebuild its config with
        `mtl_core.trial_config_from_record` or retrain it exactly with
        `mtl_core.retrain_trial` (what ``mtlsearch train --from-trial`` does).

        Raises:
            ValueError: ``number`` is not an integer >= 0 (before any request).
            ClientError: no such study, or no trial of that number (404).
        """
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise ValueError(f"number must be an integer >= 0, got {number!r}")
        result: dict[str, Any] = self._call("GET", f"/studies/{study_id}/trials/{number}")
        return result

    def best(self, study_id: str) -> dict[str, Any]:
        """The best record (``GET /studies/{id}/best``), ready for
        `mtl_core.build_loss_from_best`: weights, strategy, config, metrics, ``population``
        (the best trial's weight trajectory when it trained in a population, else None); for
        several objectives the Pareto set under ``pareto``.

        Raises:
            ClientError: no such study, or no trial has completed yet (404).
        """
        result: dict[str, Any] = self._call("GET", f"/studies/{study_id}/best")
        return result

    def cancel(self, study_id: str) -> dict[str, Any]:
        """Cancel a running study (``POST /studies/{id}/cancel``): workers take none of its
        trials any more and stop its running ones after their current epoch. Returns it.

        Raises:
            ClientError: no such study (404), it is not running (409), or the token is
                missing or wrong (401).
        """
        result: dict[str, Any] = self._call("POST", f"/studies/{study_id}/cancel")
        return result

    def resume(self, study_id: str) -> dict[str, Any]:
        """Run a failed or cancelled study again (``POST /studies/{id}/resume``), its budget
        as it was: workers run as many trials as are missing. Returns it.

        Raises:
            ClientError: no such study (404), it is running or completed (409), or the token
                is missing or wrong (401).
        """
        result: dict[str, Any] = self._call("POST", f"/studies/{study_id}/resume")
        return result

    def delete(self, study_id: str) -> None:
        """Delete the study, its trials and its artifacts (``DELETE /studies/{id}``).

        Raises:
            ClientError: no such study (404), or the token is missing or wrong (401).
        """
        self._call("DELETE", f"/studies/{study_id}")

    def wait(
        self, study_id: str, timeout: float | None = None, poll_s: float = 1.0
    ) -> dict[str, Any]:
        """Poll `status` every ``poll_s`` seconds until the study is completed, cancelled or
        failed; return it.

        Args:
            timeout: seconds to wait at most; None: as long as it takes.

        Raises:
            ValueError: ``poll_s <= 0``.
            TimeoutError: still running after ``timeout`` seconds.
            ClientError: a poll failed.
        """
        if poll_s <= 0:
            raise ValueError(f"poll_s must be > 0, got {poll_s=}")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            study = self.status(study_id)
            if study["status"] in TERMINAL_STATUSES:
                return study
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"study {study_id} still {study['status']} after {timeout:g} s")
            time.sleep(poll_s)

    # --- other resources -------------------------------------------------------------------

    def experiments(self) -> builtins.list[Any]:
        """The experiments a spec may name (``GET /experiments``), with their tasks, metrics
        and defaults."""
        return list(self._call("GET", "/experiments")["data"])

    def workers(self) -> builtins.list[Any]:
        """Every worker that registered (``GET /workers``): device, experiments, batch size,
        status, liveness, last heartbeat, current trial."""
        return list(self._call("GET", "/workers")["data"])


__all__ = [
    "API_PREFIX",
    "STUDY_STATUSES",
    "TERMINAL_STATUSES",
    "TRIAL_STATES",
    "Client",
    "ClientError",
    "load_spec_file",
]
