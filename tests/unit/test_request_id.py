"""One request, one id (gateway/api/edge.py request_id_of)."""

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


def test_the_callers_id_is_kept_when_sane() -> None:
    assert request_id_of(request([(b"x-request-id", b"trace/1+2==")])) == "trace/1+2=="
    assert request_id_of(request([(b"x-request-id", b"has space")])).startswith("req_")
