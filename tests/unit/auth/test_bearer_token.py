"""Reading the token out of an Authorization header (gateway/auth/authorization_header.py)."""

from __future__ import annotations

import pytest

from gateway.auth.authorization_header import MSG_NO_TOKEN, MSG_NOT_BEARER, bearer_token
from gateway.errors import AuthenticationFailed

NO_ERROR_CODE = 'Bearer realm="llm-gateway"'

# header: (message, the challenge) — none of these sent a token, so none has an error code
NOT_A_TOKEN: dict[str | None, str] = {
    None: MSG_NO_TOKEN,
    "": MSG_NO_TOKEN,
    "Bearer": MSG_NO_TOKEN,
    "Bearer ": MSG_NO_TOKEN,
    "bearer    ": MSG_NO_TOKEN,
    "Basic YTpi": MSG_NOT_BEARER,
    "Digest username=a": MSG_NOT_BEARER,
    "Token abc": MSG_NOT_BEARER,
    "abc.def.ghi": MSG_NOT_BEARER,
}


@pytest.mark.parametrize("header", NOT_A_TOKEN, ids=[repr(h) for h in NOT_A_TOKEN])
def test_no_bearer_token_is_401_without_an_error_code(header: str | None) -> None:
    """No header, an empty Bearer token or another scheme: 401 and a bare Bearer challenge."""
    with pytest.raises(AuthenticationFailed) as caught:
        bearer_token(header)
    assert caught.value.status == 401 and caught.value.code == "invalid_api_key"
    assert caught.value.message == NOT_A_TOKEN[header]
    assert caught.value.headers == {"www-authenticate": NO_ERROR_CODE}


@pytest.mark.parametrize("header", ["Bearer t0k", "bearer t0k", "BEARER  t0k ", "Bearer t0k\t"])
def test_bearer_token_is_read_case_insensitively_and_trimmed(header: str) -> None:
    """The scheme is case-insensitive (RFC 9110 §11.1); the token is what follows, trimmed."""
    assert bearer_token(header) == "t0k"
