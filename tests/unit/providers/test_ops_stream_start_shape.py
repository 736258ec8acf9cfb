"""A stream's first event that is no event of the endpoint asked fails the attempt
(gateway/providers/stream_start.py, `endpoint`)."""

from __future__ import annotations

import pytest

from gateway.providers.stream_start import failed_start

CHUNK = b'data: {"id":"c","object":"chat.completion.chunk","choices":[]}\n\n'
CREATED = b'event: response.created\ndata: {"type":"response.created","response":{}}\n\n'


@pytest.mark.parametrize(
    ("endpoint", "first"),
    [
        ("chat", b"data: {}\n\n"),
        ("chat", b'data: {"choices":"x"}\n\n'),
        ("completions", b'data: {"foo":1}\n\n'),
        ("responses", b'data: {"response":{}}\n\n'),
        ("responses", CHUNK),
    ],
)
def test_an_event_without_the_endpoints_key_fails_the_attempt(endpoint, first):
    failed = failed_start(first, endpoint)
    assert failed is not None and failed.reason.startswith("stream began with an event that has")


@pytest.mark.parametrize(
    ("endpoint", "first"),
    [
        ("chat", CHUNK),
        ("completions", CHUNK),
        ("chat", b'data: {"choices":[],"prompt_filter_results":[]}\n\n'),  # Azure's first
        ("responses", CREATED),
        ("chat", b": keep-alive\n\n"),
    ],
)
def test_the_endpoints_own_first_event_passes(endpoint, first):
    assert failed_start(first, endpoint) is None


def test_without_an_endpoint_any_object_passes():
    assert failed_start(b"data: {}\n\n") is None
