"""A translated chunk that carries nothing the upstream said (litellm's empty `stop`)."""

from __future__ import annotations

import pytest

from gateway.providers.stream_start import says_nothing

EMPTY_DELTA = {"content": None, "role": None, "function_call": None, "tool_calls": None}


@pytest.mark.parametrize(
    ("chunk", "expected"),
    [
        ({"choices": [{"finish_reason": "stop", "index": 0, "delta": EMPTY_DELTA}]}, True),
        ({"choices": [], "provider_specific_fields": None}, True),
        ({"choices": [{"finish_reason": "stop", "text": None}], "usage": None}, True),
        ({"choices": [{"delta": {**EMPTY_DELTA, "role": "assistant"}}]}, False),
        ({"choices": [{"delta": {**EMPTY_DELTA, "content": "Hi"}}]}, False),
        ({"choices": [{"delta": {"tool_calls": [{"index": 0}]}}]}, False),
        ({"choices": [{"finish_reason": "stop", "text": "Hi"}]}, False),
        ({"choices": [], "usage": {"prompt_tokens": 12}}, False),
        ({"error": {"message": "overloaded"}}, False),
    ],
)
def test_says_nothing(chunk, expected):
    assert says_nothing(chunk) is expected
