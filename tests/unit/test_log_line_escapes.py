"""JSON log lines a caller's text cannot break or forge (gateway/logs.py): every
character a reader takes for a line end or a control is escaped, and OpenTelemetry's
warning quoting a malformed `tracestate` whole is not written at all."""

from __future__ import annotations

import io
import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.logs import JsonFormatter, configure_logging, json_line

BREAKS = ["\u2028", "\u2029", "\x85", "\x9b", "\x80", "\x9f", "\n", "\r", "\x1b", "\x00"]


@pytest.mark.parametrize("char", BREAKS, ids=ascii)
def test_a_line_break_or_control_in_a_field_is_escaped(char: str) -> None:
    line = json_line({"model": f"gpt{char}4o", "path": "/v1/x"})
    assert len(line.decode().splitlines()) == 1
    assert char.encode() not in line
    assert json.loads(line) == {"model": f"gpt{char}4o", "path": "/v1/x"}


@given(st.dictionaries(st.text(max_size=5), st.text()))
def test_any_fields_make_one_line_that_reads_back(fields: dict[str, str]) -> None:
    line = json_line(fields).decode()
    assert len(line.splitlines()) == 1 and "\u2028" not in line and "\x85" not in line
    assert json.loads(line) == fields


def test_other_non_ascii_text_is_kept_as_it_is() -> None:
    assert json_line({"name": "caf\u00e9 \u2713"}) == '{"name":"caf\u00e9 \u2713"}'.encode()


def test_a_logged_records_line_is_escaped_too() -> None:
    record = logging.LogRecord("gateway.x", logging.WARNING, "f", 1, "a\u2028b", None, None)
    assert JsonFormatter().format(record).endswith('"msg":"a\\u2028b"}')


def test_a_malformed_tracestate_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unauthenticated caller's 20 KB `tracestate` is dropped without a log line."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("info")
        carrier = {
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "tracestate": "Z" * 20_000,
        }
        TraceContextTextMapPropagator().extract(carrier)
        carrier["tracestate"] = ",".join(f"k{i}=v" for i in range(40))  # more than 32
        TraceContextTextMapPropagator().extract(carrier)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    assert "Z" * 100 not in stream.getvalue()
    assert "key/value pairs" not in stream.getvalue()
