"""Streamed arguments as their JSON reader sees them: a secret right after an escape is
found, a redaction next to one stays valid JSON, cut anywhere; clean ones go as written."""

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.guardrails.decision import review
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from tests.unit.guardrails.test_stream_fields import chat_chunk, deltas, response_event
from tests.unit.guardrails.test_stream_scanner import run

KINDS = (DetectorKind.SECRETS, DetectorKind.EMAIL, DetectorKind.CREDIT_CARD)
REDACT = Scanner([RuleSource(Rule(k.value, k, GuardAction.REDACT)) for k in KINDS])
BLOCK = Scanner([RuleSource(Rule(k.value, k, GuardAction.BLOCK)) for k in KINDS])
PROBE = '{"note":"key:\\nAKIAIOSFODNN7EXAMPLE\\n","c":"card\\n4111111111111111"}'
QUOTED = '{"e":"x\\u0022bob@example.com","f":"y\\nbob@example.com"}'


def tool_chunk(arguments: str) -> bytes:
    return chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]})


def chat_arguments(out: bytes) -> str:
    return "".join(
        call["function"].get("arguments") or ""
        for event in deltas(out)
        for choice in event.get("choices") or ()
        for call in (choice.get("delta") or {}).get("tool_calls") or ()
    )


def chat_events(arguments: str, cuts: list[int]) -> list[bytes]:
    bounds = [0, *cuts, len(arguments)]
    pieces = [arguments[a:b] for a, b in itertools.pairwise(bounds)]
    return [
        *(tool_chunk(p) for p in pieces),
        chat_chunk({}, finish="tool_calls"),
        b"data: [DONE]\n\n",
    ]


def responses_events(arguments: str, cut: int) -> list[bytes]:
    kind = "response.function_call_arguments.delta"
    return [
        response_event(kind, item_id="f", output_index=0, delta=arguments[:cut]),
        response_event(kind, item_id="f", output_index=0, delta=arguments[cut:]),
        response_event("response.function_call_arguments.done", item_id="f", arguments=arguments),
    ]


@pytest.mark.parametrize("cut", range(1, len(PROBE)))
def test_a_secret_after_an_escape_blocks_cut_anywhere(cut):
    """`key:\\nAKIA...`: the reader sees a newline, then the key (cut even as `k\\` | `nAKIA`)."""
    out, end, _ = run(BLOCK, "chat", chat_events(PROBE, [cut]))
    assert end is not None and b"AKIA" not in out
    out, end, _ = run(BLOCK, "responses", responses_events(PROBE, cut))
    assert end is not None and b"AKIA" not in out


@pytest.mark.parametrize("arguments", [PROBE, QUOTED])
@pytest.mark.parametrize("cut", range(1, 60))
def test_a_redaction_next_to_an_escape_is_valid_json_cut_anywhere(arguments, cut):
    expected = json.loads(arguments)
    expected = {k: review(REDACT, v).text for k, v in expected.items()}
    out, end, _ = run(REDACT, "chat", chat_events(arguments, [min(cut, len(arguments) - 1)]))
    assert end is None
    assert json.loads(chat_arguments(out)) == expected
    out, end, _ = run(
        REDACT, "responses", responses_events(arguments, min(cut, len(arguments) - 1))
    )
    assert end is None
    events = deltas(out)
    assert json.loads("".join(e.get("delta") or "" for e in events)) == expected
    assert json.loads(events[-1]["arguments"]) == expected


# Characters folding drops (C1 controls, format and combining marks) are left out: right
# after a key they make the window and a whole-text scan read the key differently, on
# any streamed text (test_window's concern, not the arguments').
VALUES = st.lists(
    st.one_of(
        st.text(st.characters(exclude_categories=["Cs", "Cc", "Cf", "Mn", "Me"]), max_size=12),
        st.sampled_from(["AKIAIOSFODNN7EXAMPLE", "bob@example.com", "4111111111111111"]),
        st.sampled_from('\n\t"\\/\x00\u2028é😀'),
    ),
    max_size=8,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(value=VALUES, ascii_only=st.booleans(), cuts=st.sets(st.integers(1, 200), max_size=5))
def test_streamed_arguments_read_as_the_redacted_value(value, ascii_only, cuts):
    """Any value, encoded either way, streamed in pieces cut anywhere: the client reads
    the value redacted as a whole-text scan redacts it; a clean one comes as written."""
    arguments = json.dumps({"k": value}, ensure_ascii=ascii_only)
    cut_at = sorted(c for c in cuts if c < len(arguments))
    out, end, _ = run(REDACT, "chat", chat_events(arguments, cut_at))
    assert end is None
    whole = review(REDACT, value)
    received = chat_arguments(out)
    assert json.loads(received) == {"k": whole.text}
    if not whole.redactions:
        assert received == arguments


def test_clean_arguments_go_byte_for_byte():
    """Escapes in clean arguments are not decoded on the way (L1)."""
    arguments = '{"a":"clean \\u00e9 \\/ \\u2028 \\n"}'
    out, _, _ = run(REDACT, "chat", chat_events(arguments, [5, 14, 20]))
    assert chat_arguments(out) == arguments


@pytest.mark.parametrize("learned", [True, False])
def test_a_rewritten_event_escapes_line_separators(learned):
    """An event the scan changed is written again: U+2028/U+2029 as escapes, never raw
    (a line-splitting reader would cut the data: line there)."""
    pieces = ["a\u2028b ", "bob@exa", "mple.com \u2029 c", "\u2028"]
    events = [chat_chunk({"content": p}) for p in pieces]
    events += [tool_chunk('{"a":"\u2028 bob@example.com"}'), b"data: [DONE]\n\n"]
    events = [
        e.replace("\u2028".encode(), b"\\u2028").replace("\u2029".encode(), b"\\u2029")
        for e in events
    ]
    out, end, _ = run(REDACT, "chat", events, learn=learned)
    assert end is None and b"example" not in out
    assert "\u2028".encode() not in out and "\u2029".encode() not in out
    assert out.count(b"\\u2028") == 3
