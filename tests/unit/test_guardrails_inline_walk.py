"""The inline check's budget counts the walk as well as the text: a body of megabytes of
numbers, empty objects, empty messages or JSON escapes gives up on the event loop at
once (the whole check then runs on a thread), common requests stay inline, and the
inline and threaded paths decide alike wherever the inline one gives up."""

import json
import time
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.guardrails import check
from gateway.guardrails.check import (
    check_answer,
    check_answer_inline,
    check_request,
    check_request_inline,
)
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner

RULES = Scanner(
    [
        RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK)),
        RuleSource(Rule("email", DetectorKind.EMAIL, GuardAction.REDACT)),
        RuleSource(Rule("credit_card", DetectorKind.CREDIT_CARD, GuardAction.REDACT)),
        RuleSource(Rule("phone", DetectorKind.PHONE, GuardAction.FLAG)),
    ]
)
MB = 1_000_000


def tool(parameters: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "t", "parameters": parameters}}],
    }


def called_with(arguments: str) -> dict[str, Any]:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}
    return {"model": "m", "messages": [{"role": "assistant", "tool_calls": [call]}]}


# Each ~2 MB, nearly no text to scan: before, each cost the event loop 0.1-1.6 s.
WALKS = {
    "schema of numbers": lambda: tool({"type": "integer", "enum": [0] * (MB // 2)}),
    "schema of one string": lambda: tool({"type": "string", "enum": ["a"] * (MB // 2)}),
    "schema of empty objects": lambda: tool({"examples": [{}] * (MB // 2)}),
    "schema of empty lists": lambda: tool({"examples": [[]] * (MB // 2)}),
    "empty messages": lambda: {
        "model": "m",
        "messages": [{"role": "user", "content": ""}] * 60_000,
    },
    "messages without text": lambda: {"model": "m", "messages": [{"role": "assistant"}] * 80_000},
    "arguments of escapes": lambda: called_with(json.dumps({"k": "\n" * MB})),
    "arguments of exponents": lambda: called_with(json.dumps([1e300] * (MB // 4))),
}


@pytest.mark.parametrize("shape", WALKS)
def test_a_body_of_walking_gives_up_inline_at_once(shape):
    """The inline check returns None (a thread's turn) within milliseconds of CPU."""
    body = WALKS[shape]()
    started = time.process_time()
    decided = check_request_inline(RULES, "chat", body)
    spent = time.process_time() - started
    assert decided is None
    assert spent < 0.02, spent


def test_an_answer_of_escapes_gives_up_inline_at_once():
    """The output side too: an answer asked as JSON, megabytes of escapes in it."""
    content = json.dumps({"k": "\n" * MB})
    payload = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
    started = time.process_time()
    decided = check_answer_inline(RULES, "chat", payload, is_json=True)
    spent = time.process_time() - started
    assert decided is None
    assert spent < 0.02, spent


AGENT = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "You are an agent."},
        {"role": "user", "content": "What's the weather in Paris? Mail me at jo@corp.example.com"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris", "t": 1e3}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 18, "sky": "cloudy"}'},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": f"tool_{k}",
                "description": "Get the current weather for a city.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string", "description": "The city"},
                        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    },
                    "required": ["city"],
                },
            },
        }
        for k in range(3)
    ],
}
BENCH = {  # bench/'s request: a system message and a ~1 KB prompt
    "model": "m",
    "max_tokens": 64,
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Summarise the following notes. " * 33},
    ],
}


@pytest.mark.parametrize("body", [BENCH, AGENT], ids=["bench", "agent"])
def test_common_requests_are_decided_on_the_loop(body):
    """No thread hop for the common case: decided inline, as the whole check decides."""
    decided = check_request_inline(RULES, "chat", body)
    assert decided is not None
    assert decided == check_request(RULES, "chat", body)


# Texts a rule may fire on, and texts that cost the walk: JSON numbers, escapes.
WORDS = st.sampled_from(
    [
        *("hello", "jo@corp.example.com", "4111 1111 1111 1111", "+1 415 555 0132", "1e3"),
        *("", "AKIAZ7Q2W9X4C6V8B1N3", "line\nbreak", 'quote"d', "é", "漢字"),
    ]
)
TEXTS = st.lists(WORDS, max_size=4).map(" ".join)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXTS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXTS, inner, max_size=4),
    max_leaves=12,
)
MESSAGE = st.one_of(
    st.fixed_dictionaries({"role": st.just("user"), "content": TEXTS}),
    st.fixed_dictionaries(
        {
            "role": st.just("assistant"),
            "tool_calls": st.lists(
                st.fixed_dictionaries(
                    {
                        "type": st.just("function"),
                        "function": st.fixed_dictionaries(
                            {"name": st.just("f"), "arguments": JSON.map(json.dumps)}
                        ),
                    }
                ),
                max_size=2,
            ),
        }
    ),
)
BODY = st.fixed_dictionaries(
    {
        "model": st.just("m"),
        "messages": st.lists(MESSAGE, max_size=4),
        "tools": st.lists(
            st.fixed_dictionaries(
                {
                    "type": st.just("function"),
                    "function": st.fixed_dictionaries({"name": st.just("t"), "parameters": JSON}),
                }
            ),
            max_size=2,
        ),
    },
    optional={"extra_field": JSON},
)
BUDGET = st.integers(min_value=0, max_value=check.INLINE_CHARS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODY, budget=BUDGET)
def test_inline_and_threaded_requests_decide_alike(body, budget):
    """Whatever the inline budget, and wherever the inline check gives up, the request
    is decided as the whole check decides it (the stage's: inline, else on a thread)."""
    with patch.object(check, "INLINE_CHARS", budget):
        inline = check_request_inline(RULES, "chat", body)
    whole = check_request(RULES, "chat", body)
    assert inline is None or inline == whole


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=JSON.map(json.dumps), is_json=st.booleans(), budget=BUDGET)
def test_inline_and_threaded_answers_decide_alike(content, is_json, budget):
    payload = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
    with patch.object(check, "INLINE_CHARS", budget):
        inline = check_answer_inline(RULES, "chat", payload, is_json=is_json)
    whole = check_answer(RULES, "chat", payload, is_json=is_json)
    assert inline is None or inline == whole
