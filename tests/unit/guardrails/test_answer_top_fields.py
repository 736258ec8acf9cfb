"""Every string an answer or a stream event carries at its top level is scanned by the
output rules but the structure (ids, the model, `object`, `created`, counts): a
provider's own field (Perplexity's `citations` and `search_results`) is a text of the
answer; and so is every key of a Responses output item but its ids, type and status."""

import json
from typing import Any

import orjson
import pytest

from gateway.guardrails.check import check_answer
from gateway.guardrails.decision import Blocked, Passed
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from gateway.guardrails.texts import rewrite_answer
from tests.support.output_stream import DONE, scan_stream

KEY = "AKIAIOSFODNN7EXAMPLE"
MARK = "[REDACTED:secrets]"
BLOCK = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK))])
REDACT = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.REDACT))])
BASE = {"id": "c", "object": "chat.completion", "created": 1, "model": "m"}

# (a top-level field, its value holding the key)
EXTRAS: list[tuple[str, Any]] = [
    ("citations", [f"https://example.com/{KEY}"]),
    ("search_results", [{"title": "t", "url": "u", "snippet": f"key {KEY}"}]),
    ("provider_note", f"key {KEY}"),
    ("usage", {"prompt_tokens": 1, "note": f"key {KEY}"}),
]


def answer(endpoint: str, **extra: Any) -> dict[str, Any]:
    if endpoint == "chat":
        message = {"role": "assistant", "content": "hi"}
        choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": "stop"}
    else:
        choice = {"index": 0, "text": "hi", "finish_reason": "stop"}
    return {**BASE, "choices": [choice], **extra}


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
@pytest.mark.parametrize(("name", "value"), EXTRAS)
def test_a_key_in_a_top_level_field_of_a_whole_answer_is_blocked(endpoint, name, value):
    decision = check_answer(BLOCK, endpoint, answer(endpoint, **{name: value}))
    assert isinstance(decision, Blocked)


@pytest.mark.parametrize(("name", "value"), EXTRAS)
def test_a_key_in_a_top_level_field_of_a_whole_answer_is_redacted(name, value):
    decision = check_answer(REDACT, "chat", answer("chat", **{name: value}))
    assert isinstance(decision, Passed)
    raw = orjson.dumps(decision.body).decode()
    assert KEY not in raw and MARK in raw


def test_a_responses_object_s_own_top_level_field_is_scanned():
    response = {"id": "r", "object": "response", "output": [], "citations": [KEY]}
    assert isinstance(check_answer(BLOCK, "responses", response), Blocked)


def test_an_answer_with_known_fields_only_is_returned_as_it_came():
    usage = {"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": 0}}
    body = answer("chat", usage=usage, system_fingerprint="fp", service_tier="default")
    assert rewrite_answer("chat", body, lambda text: ()) is body


def test_structure_is_not_scanned():
    seen: list[str] = []
    body = answer("chat", usage={"prompt_tokens": 1}, system_fingerprint="fp")
    rewrite_answer("chat", body, lambda text: seen.append(text) or ())
    assert seen == ["hi"]


# (a Responses output item holding the key in a key of its own)
ITEMS: list[dict[str, Any]] = [
    {
        "type": "message",
        "id": "m",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "hi", "annotations": []}],
        "provider_note": f"key {KEY}",
    },
    {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "hi", "extra": KEY}],
    },
    {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}", "note": KEY},
    {"type": "function_call", "call_id": "c", "name": KEY, "arguments": "{}"},
    {"type": "mcp_call", "id": "m", "name": "f", "arguments": "{}", "error": f"bad {KEY}"},
    {"type": "mcp_list_tools", "id": "m", "server_label": "s", "tools": [{"description": KEY}]},
    {"type": "computer_call", "id": "c", "action": {"type": "type", "text": KEY}},
    {"type": "reasoning", "id": "r", "summary": [], "extra_text": KEY},
]


@pytest.mark.parametrize("item", ITEMS, ids=lambda item: item["type"])
def test_a_key_in_a_responses_output_item_s_own_key_is_blocked(item):
    response = {"id": "r", "object": "response", "output": [item]}
    assert isinstance(check_answer(BLOCK, "responses", response), Blocked)


def test_a_responses_item_s_ids_and_encrypted_reasoning_are_not_scanned():
    seen: list[str] = []
    item = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"}
    call = {"type": "function_call", "id": "fc", "call_id": "c", "name": "f", "arguments": "{}"}
    response = {"id": "r", "object": "response", "output": [item, call]}
    rewrite_answer("responses", response, lambda text: seen.append(text) or ())
    assert seen == ["f", "{}"]


def chunk(**extra: Any) -> bytes:
    choice = {"index": 0, "delta": {"content": "hi there "}, "finish_reason": None}
    data = {**BASE, "object": "chat.completion.chunk", "choices": [choice], **extra}
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def stream(scanner: Scanner, events: list[bytes]) -> tuple[bytes, bool]:
    return scan_stream(scanner, [*events, DONE])


@pytest.mark.parametrize(("name", "value"), EXTRAS)
@pytest.mark.parametrize("place", ["first", "later", "alone"])
def test_a_key_in_a_top_level_field_of_a_stream_event_is_blocked(name, value, place):
    """On the first event, on one after the scanner learned the stream's shape, or on
    an event with no choice at all."""
    if place == "alone":
        data = {**BASE, "object": "chat.completion.chunk", "choices": [], name: value}
        late = b"data: " + json.dumps(data).encode() + b"\n\n"
    else:
        late = chunk(**{name: value})
    events = [late, chunk()] if place == "first" else [chunk(), chunk(), late, chunk()]
    out, ended = stream(BLOCK, events)
    assert ended and KEY.encode() not in out


@pytest.mark.parametrize(("name", "value"), EXTRAS)
def test_a_key_in_a_top_level_field_of_a_stream_event_is_redacted(name, value):
    out, ended = stream(REDACT, [chunk(), chunk(**{name: value}), chunk()])
    assert not ended and KEY.encode() not in out and MARK.encode() in out


def test_an_ordinary_stream_passes_byte_for_byte():
    events = [chunk(), chunk(usage=None), chunk(obfuscation="x1y2", service_tier="default")]
    out, ended = stream(BLOCK, events)
    assert not ended and out.count(b"hi there") == 3
