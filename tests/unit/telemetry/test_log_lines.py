"""Log lines carry the trace id of the traced request they were written in; none else."""

from __future__ import annotations

import json
import logging

from gateway.context import RequestContext
from gateway.logs import JsonFormatter, request_fields
from gateway.providers.openai_compat import error_summary
from gateway.telemetry.current import CURRENT_TRACE


class _Trace:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"


def record() -> logging.LogRecord:
    return logging.LogRecord("gateway.x", logging.WARNING, __file__, 1, "hello", None, None)


def test_a_line_written_in_a_traced_request_has_its_trace_id():
    token = CURRENT_TRACE.set(_Trace())  # type: ignore[arg-type]  # only trace_id is read
    try:
        line = json.loads(JsonFormatter().format(record()))
        access = request_fields(RequestContext(request_id="req_1", endpoint="chat"))
    finally:
        CURRENT_TRACE.reset(token)
    assert line["trace_id"] == _Trace.trace_id
    assert line["level"] == "warning" and line["ts"] > 0
    assert access["trace_id"] == _Trace.trace_id
    assert access["request_id"] == "req_1"


def test_without_a_trace_there_is_no_trace_id():
    assert "trace_id" not in json.loads(JsonFormatter().format(record()))
    assert request_fields(RequestContext(request_id="req_1", endpoint="chat"))["trace_id"] is None


def test_an_upstream_error_is_logged_by_type_and_code_without_its_message():
    """An upstream's error message may quote the prompt: only type and code are kept."""
    secret = "sk-abcdefghijklmnop1234"
    error = {"message": "your prompt said: hello", "type": "server_error", "code": secret}
    assert error_summary(error, (secret,)) == " (type=server_error, code=[redacted])"
    assert error_summary({"message": "x"}, ()) == ""
    assert error_summary({"type": "", "code": 503}, ()) == " (code=503)"
    assert error_summary({"type": ["list"], "code": None}, ()) == ""
