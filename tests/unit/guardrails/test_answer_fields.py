"""Every string a chat answer's message or a streamed delta carries is scanned by the
output rules, whatever its name (`thinking`, `reasoning_details`, a provider's own
field) and whether content comes as a string or a list of parts; only fields that are
structure (role, ids, finish_reason, type, index) are not."""

import json
from typing import Any

import orjson
import pytest

from gateway.guardrails.check import check_answer
from gateway.guardrails.decision import Blocked, Passed
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from tests.support.output_stream import DONE, scan_stream

KEY = "AKIAIOSFODNN7EXAMPLE"
MARK = "[REDACTED:secrets]"
BLOCK = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK))])
REDACT = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.REDACT))])

# (a message or delta's field, its value holding the key)
FIELDS: list[tuple[str, Any]] = [
    ("thinking", f"I recall {KEY} from the context"),
    ("reasoning_details", [{"type": "reasoning.text", "text": f"key {KEY}"}]),
    ("thinking_blocks", [{"type": "thinking", "thinking": f"key {KEY}", "signature": "s"}]),
    ("provider_specific_fields", {"citations": [f"see {KEY}"]}),
    ("reasoning", {"text": f"key {KEY}"}),
]


def answer(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop"}
        ]
    }


@pytest.mark.parametrize(("name", "value"), FIELDS)
def test_a_key_in_any_field_of_a_whole_answer_s_message_is_blocked(name, value):
    decision = check_answer(BLOCK, "chat", answer({"content": "hi", name: value}))
    assert isinstance(decision, Blocked)


@pytest.mark.parametrize(("name", "value"), FIELDS)
def test_a_key_in_any_field_of_a_whole_answer_s_message_is_redacted(name, value):
    decision = check_answer(REDACT, "chat", answer({"content": "hi", name: value}))
    assert isinstance(decision, Passed)
    raw = orjson.dumps(decision.body).decode()
    assert KEY not in raw and MARK in raw


def test_a_key_in_an_unknown_key_of_an_answer_s_content_part_is_redacted():
    parts = [{"type": "thinking", "thinking": f"key {KEY}"}, {"type": "text", "text": "hi"}]
    decision = check_answer(REDACT, "chat", answer({"content": parts}))
    assert isinstance(decision, Passed) and KEY not in orjson.dumps(decision.body).decode()


def test_a_key_in_a_choice_s_own_unknown_field_is_redacted():
    """vLLM's `stop_reason` is the stop string the model met."""
    body = {"choices": [{"index": 0, "message": {"content": "hi"}, "stop_reason": KEY}]}
    decision = check_answer(REDACT, "chat", body)
    assert isinstance(decision, Passed) and KEY not in orjson.dumps(decision.body).decode()


def test_structure_fields_are_left_as_they_came():
    body = answer(
        {
            "content": "hi",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        }
    )
    decision = check_answer(REDACT, "chat", body)
    assert isinstance(decision, Passed) and decision.body is body


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    data = {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(data) + b"\n\n"


def run(scanner: Scanner, events: list[bytes]) -> tuple[bytes, bool]:
    return scan_stream(scanner, [*events, DONE])


def strings(out: bytes, field: str) -> str:
    """Every string under `field` in the deltas the client got, joined in order."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for line in out.split(b"\n\n"):
        if line.startswith(b"data: {"):
            for choice in json.loads(line[6:]).get("choices", []):
                walk((choice.get("delta") or {}).get(field))
    return "".join(found)


def split(text: str, cut: int) -> list[str]:
    return [text[:cut], text[cut:]]


@pytest.mark.parametrize("cut", [3, 11, 20])
@pytest.mark.parametrize("scanner", [BLOCK, REDACT], ids=["block", "redact"])
def test_streamed_thinking_is_scanned_as_it_grows(cut, scanner):
    pieces = split(f"hmm {KEY} ok", cut + 4)
    out, ended = run(scanner, [chunk({"thinking": p}) for p in pieces] + [chunk({}, "stop")])
    assert KEY not in strings(out, "thinking")
    assert ended if scanner is BLOCK else MARK in strings(out, "thinking")


@pytest.mark.parametrize("cut", [3, 11, 20])
@pytest.mark.parametrize("scanner", [BLOCK, REDACT], ids=["block", "redact"])
def test_streamed_content_parts_are_scanned_as_one_growing_text(cut, scanner):
    """Content streamed as a list of parts: each part's text continues the choice's
    content, within an event and across events."""
    text = f"key {KEY} ok"
    a, b = split(text, cut + 4)
    parts = lambda *texts: [{"type": "text", "text": t} for t in texts]  # noqa: E731
    events = [
        chunk({"content": parts(a[:2], a[2:])}),
        chunk({"content": parts(b)}),
        chunk({}, "stop"),
    ]
    out, ended = run(scanner, events)
    assert KEY not in strings(out, "content")
    assert ended if scanner is BLOCK else MARK in strings(out, "content")


@pytest.mark.parametrize(("name", "value"), FIELDS[1:])
def test_a_structured_delta_field_is_reviewed_whole(name, value):
    out, ended = run(REDACT, [chunk({name: value}), chunk({}, "stop")])
    assert not ended and KEY not in out.decode() and MARK in out.decode()


def test_a_delta_holding_only_an_unknown_text_is_not_passed_unparsed():
    """The first event of a stream carrying only `thinking` (nothing held yet)."""
    out, ended = run(BLOCK, [chunk({"thinking": KEY}), chunk({}, "stop")])
    assert ended and KEY not in out.decode()


def test_a_key_in_a_choice_s_own_field_of_a_stream_is_redacted():
    data = {
        "id": "c",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": KEY}],
    }
    out, ended = run(REDACT, [b"data: " + orjson.dumps(data) + b"\n\n"])
    assert not ended and KEY not in out.decode()


def test_clean_unknown_fields_stream_unchanged():
    events = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"thinking": "let me see"}),
        chunk({"content": "hi"}),
    ]
    out, ended = run(REDACT, events)
    assert (
        not ended and strings(out, "thinking") == "let me see" and strings(out, "content") == "hi"
    )


def test_a_key_in_a_tool_call_s_unknown_field_of_a_whole_answer_is_redacted():
    """A provider's own key on a call or its function (Gemini's `extra_content`)."""
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": "{}", "note": f"key {KEY}"},
        "extra_content": {"google": {"thought": f"key {KEY}"}},
    }
    decision = check_answer(REDACT, "chat", answer({"content": None, "tool_calls": [call]}))
    assert isinstance(decision, Passed)
    raw = orjson.dumps(decision.body).decode()
    assert KEY not in raw and '"name":"f"' in raw and '"id":"call_1"' in raw


def test_a_key_as_a_called_tool_s_name_blocks_a_whole_answer():
    """A name is scanned, never rewritten (json_texts.py): a redact rule refuses it."""
    call = {"id": "c", "type": "function", "function": {"name": KEY, "arguments": "{}"}}
    decision = check_answer(REDACT, "chat", answer({"tool_calls": [call]}))
    assert isinstance(decision, Blocked)


def test_a_key_in_a_streamed_tool_call_s_name_or_own_field_is_redacted():
    call = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": KEY, "arguments": '{"a": '},
        "extra_content": f"key {KEY}",
    }
    more = {"index": 0, "function": {"arguments": "1}"}}
    out, ended = run(REDACT, [chunk({"tool_calls": [call]}), chunk({"tool_calls": [more]})])
    assert not ended and KEY not in out.decode()
    events = [json.loads(line[6:]) for line in out.split(b"\n\n") if line.startswith(b"data: {")]
    calls = [c for e in events for ch in e["choices"] for c in ch["delta"].get("tool_calls", [])]
    assert "".join(c["function"].get("arguments", "") for c in calls) == '{"a": 1}'
    assert calls[0]["id"] == "call_1" and calls[0]["type"] == "function"
