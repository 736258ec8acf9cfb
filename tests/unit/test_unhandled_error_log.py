"""An unhandled error's log line carries the request id the caller got (SPEC §7: log
lines carry the request id), so the two can be matched."""

from __future__ import annotations

import logging

import pytest
from starlette.requests import Request

from gateway.app import _internal_error


async def test_the_unhandled_error_line_names_the_answers_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [(b"x-request-id", b"req-from-the-caller")],
        "query_string": b"",
    }
    with caplog.at_level(logging.ERROR, logger="gateway.app"):
        answer = await _internal_error(Request(scope), RuntimeError("boom"))
    assert answer.status_code == 500
    assert answer.headers["x-request-id"] == "req-from-the-caller"
    (line,) = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert line.fields["request_id"] == "req-from-the-caller"  # type: ignore[attr-defined]
