"""One request, one id (gateway/api/edge.py request_id_of)."""

import pytest
from starlette.requests import Request

from gateway.api.edge import request_id_of


def request(headers: list[tuple[bytes, bytes]]) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


def test_a_minted_id_is_the_same_every_time_it_is_asked_for() -> None:
    """The handler, its access line and the last-resort error handler name one id."""
    one = request([])
    minted = request_id_of(one)
    assert minted.startswith("req_") and request_id_of(one) == minted
    assert request_id_of(Request(one.scope)) == minted  # a new Request over the same scope
    assert request_id_of(request([])) != minted


@pytest.mark.parametrize("given", ["trace/1+2==", "has space", "a", "x" * 256, "3f2b 9c/1 ~!"])
def test_the_callers_id_is_kept_when_sane(given: str) -> None:
    assert request_id_of(request([(b"x-request-id", given.encode())])) == given


@pytest.mark.parametrize(
    "given",
    [b"", b" lead", b"trail ", b"x" * 257, b"tab\there", b"nl\nx", b"\xd0\xba\xd0\xbb", b"del\x7f"],
)
def test_an_id_unsafe_in_headers_or_logs_is_replaced(given: bytes) -> None:
    assert request_id_of(request([(b"x-request-id", given)])).startswith("req_")
