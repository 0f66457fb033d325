"""The bearer-token guard."""

from __future__ import annotations

import pytest
from fastapi.security import HTTPAuthorizationCredentials

from mtlsearch.settings import Settings
from service.api.deps import require_token
from service.errors import AuthenticationError


def bearer(token: str) -> HTTPAuthorizationCredentials:
    return HTTPAuthorizationCredentials(scheme="Bearer", credentials=token)


def test_no_configured_token_lets_everything_through() -> None:
    require_token(Settings(api_token=None), None)
    require_token(Settings(api_token=None), bearer("anything"))


def test_the_right_token_passes_and_others_fail() -> None:
    settings = Settings(api_token="sécret-1")
    require_token(settings, bearer("sécret-1"))
    with pytest.raises(AuthenticationError, match="missing bearer token"):
        require_token(settings, None)
    for wrong in ("sécret-2", "", "sécret-1 "):
        with pytest.raises(AuthenticationError, match="wrong bearer token"):
            require_token(settings, bearer(wrong))
