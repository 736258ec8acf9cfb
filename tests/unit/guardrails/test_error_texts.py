"""An upstream's error is an answer's text: its message goes through the output rules
whole, streamed (chat, completions, Responses) and relayed as a 4xx."""

import asyncio
import re
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ContentPolicyViolation
from gateway.guardrails.check import check_answer
from gateway.guardrails.decision import Blocked, GuardrailHit, Passed
from gateway.guardrails.guards import NO_GUARDS, Guards
from gateway.guardrails.kinds import DetectorKind, GuardAction, Where
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from gateway.guardrails.stage import GuardedMessage, guard_upstream_error, relayed_message
from gateway.guardrails.stream_scanner import OutputScanner
from gateway.guardrails.texts import rewrite_answer, rewrite_error, rewrite_response_event

EMAIL = "bob@example.com"
CARD = "4111 1111 1111 1111"
SAID = f"upstream said {EMAIL} {CARD}"
REDACTED = "upstream said [REDACTED:email] [REDACTED:credit_card]"
PII = Scanner(
    [
        RuleSource(Rule("email", DetectorKind.EMAIL, GuardAction.REDACT)),
        RuleSource(Rule("credit_card", DetectorKind.CREDIT_CARD, GuardAction.REDACT)),
    ]
)
BLOCK_CARDS = Scanner(
    [RuleSource(Rule("credit_card", DetectorKind.CREDIT_CARD, GuardAction.BLOCK))]
)
FLAG_EMAIL = Scanner([RuleSource(Rule("email", DetectorKind.EMAIL, GuardAction.FLAG))])
OUT = Where.OUTPUT


def replacing(word: str):
    return lambda text: [(m.start(), m.end(), "[R]") for m in re.finditer(re.escape(word), text)]


ERROR_SHAPES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    # OpenAI's error object: identifiers by contract, but an upstream may put any text in
    # its type, code and param: each is scanned like the message
    (
        {"error": {"message": "a X b", "type": "X", "code": "X", "param": "X"}},
        {"error": {"message": "a [R] b", "type": "[R]", "code": "[R]", "param": "[R]"}},
    ),
    ({"error": "a X", "error_type": "X"}, {"error": "a [R]", "error_type": "X"}),  # TGI
    (
        {"object": "error", "message": "X", "code": 400},
        {"object": "error", "message": "[R]", "code": 400},
    ),
    ({"detail": "X!"}, {"detail": "[R]!"}),  # FastAPI
]


@pytest.mark.parametrize(("error", "expected"), ERROR_SHAPES)
def test_each_error_shape_has_its_message_rewritten(error, expected):
    assert rewrite_error(error, replacing("X")) == expected
    for endpoint in ("chat", "completions", "embeddings"):
        assert rewrite_answer(endpoint, error, replacing("X")) == expected


def test_a_clean_error_is_the_same_object():
    error = {"error": {"message": "nothing here", "type": "invalid_request_error"}}
    assert rewrite_error(error, replacing("X")) is error


def test_a_failed_response_object_has_its_error_message_rewritten():
    failed = {
        "object": "response",
        "status": "failed",
        "output": [],
        "error": {"code": "X", "message": "X."},
    }
    out = rewrite_answer("responses", failed, replacing("X"))
    assert out["error"] == {"code": "[R]", "message": "[R]."}


def test_responses_error_events_have_their_messages_rewritten():
    event = {"type": "error", "code": "X", "message": "X", "param": None, "sequence_number": 3}
    assert rewrite_response_event(event, replacing("X"))["message"] == "[R]"
    nested = {"type": "error", "error": {"type": "X", "message": "X"}}
    assert rewrite_response_event(nested, replacing("X"))["error"]["message"] == "[R]"
    failed = {
        "type": "response.failed",
        "response": {"status": "failed", "error": {"message": "X"}},
    }
    assert rewrite_response_event(failed, replacing("X"))["response"]["error"]["message"] == "[R]"


@given(
    before=st.text(alphabet="abc xyz.,:", max_size=30),
    after=st.text(alphabet="abc xyz.,:", max_size=30),
    shape=st.sampled_from(["object", "string", "bare", "detail"]),
)
def test_a_redact_rule_leaves_no_address_in_any_error_shape(before, after, shape):
    message = f"{before} {EMAIL} {after}"
    body: dict[str, Any] = {
        "object": {"error": {"message": message}},
        "string": {"error": message},
        "bare": {"message": message},
        "detail": {"detail": message},
    }[shape]
    decision = check_answer(PII, "chat", body)
    assert isinstance(decision, Passed)
    assert EMAIL not in orjson.dumps(decision.body).decode()
    assert "[REDACTED:email]" in orjson.dumps(decision.body).decode()
    assert decision.hits == (GuardrailHit("email", GuardAction.REDACT, OUT),)


def test_a_block_rule_blocks_a_200_error_body():
    decision = check_answer(BLOCK_CARDS, "chat", {"error": {"message": SAID}})
    assert isinstance(decision, Blocked) and decision.rule == "credit_card"


# --- the relayed 4xx --------------------------------------------------------------


def relayed(message: str, rules: Scanner) -> GuardedMessage:
    error = {"message": message}
    return relayed_message(error, check_answer(rules, "chat", {"error": error}))


def test_a_relayed_message_redacted_blocked_flagged_or_clean():
    redacted = relayed(SAID, PII)
    assert redacted.message == REDACTED
    assert [h.rule for h in redacted.hits] == ["email", "credit_card"]
    blocked = relayed(SAID, BLOCK_CARDS)
    assert "credit_card" in blocked.message and "1111" not in blocked.message
    assert blocked.hits == (GuardrailHit("credit_card", GuardAction.BLOCK, OUT),)
    flagged = relayed(SAID, FLAG_EMAIL)
    assert flagged.message is SAID
    assert flagged.hits == (GuardrailHit("email", GuardAction.FLAG, OUT),)
    clean = relayed("fine", PII)
    assert clean.message == "fine" and clean.hits == ()


def test_a_relayed_errors_type_param_and_code_are_output_too():
    """An upstream may put any text in the identifiers of its error (guardrails probe:
    a code the team's rule blocks, an address in `param`): scanned like its message; a
    block keeps those no rule touches on their own."""
    fields = {"type": "invalid_request_error", "param": "bob@example.com", "code": "c"}
    said = asyncio.run(
        guard_upstream_error(Guards(("p",), Scanner(()), PII), "chat", "fine", **_as_kwargs(fields))
    )
    assert (said.message, said.type, said.code) == ("fine", "invalid_request_error", "c")
    assert said.param == "[REDACTED:email]"
    carded = {**fields, "param": None, "code": f"card {CARD}"}
    blocked = asyncio.run(
        guard_upstream_error(
            Guards(("p",), Scanner(()), BLOCK_CARDS), "chat", "fine", **_as_kwargs(carded)
        )
    )
    assert "credit_card" in blocked.message and CARD not in blocked.message
    assert (blocked.type, blocked.param, blocked.code) == ("invalid_request_error", None, None)


def _as_kwargs(fields: dict[str, str | None]) -> dict[str, str | None]:
    return {"type_": fields["type"], "param": fields["param"], "code": fields["code"]}


def test_a_team_without_output_rules_gets_the_message_as_it_came():
    said = asyncio.run(guard_upstream_error(NO_GUARDS, "chat", SAID))
    assert said.message is SAID and said.hits == ()
    guards = Guards(("p",), Scanner(()), PII)
    assert asyncio.run(guard_upstream_error(guards, "responses", SAID)).message == REDACTED


# --- streams ------------------------------------------------------------------------


def feed_all(scanner: Scanner, endpoint: str, events: list[bytes]) -> tuple[bytes, Any, list[Any]]:
    hits: list[Any] = []
    step = OutputScanner(scanner, endpoint, hits)
    out = b""
    for event in events:
        emit = step.feed(event)
        if emit.offload is not None:
            emit = emit.offload()
        out += emit.data
        if emit.end is not None:
            return out, emit.end, hits
    emit = step.finish()
    return out + emit.data, emit.end, hits


CHUNK = b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hello "},"finish_reason":null}]}\n\n'
CHAT_ERROR = (
    b"data: " + orjson.dumps({"error": {"message": SAID, "type": "server_error"}}) + b"\n\n"
)
RESPONSES_ERROR = (
    b"event: error\ndata: "
    + orjson.dumps({"type": "error", "code": "x", "message": SAID})
    + b"\n\n"
)
RESPONSES_FAILED = (
    b"event: response.failed\ndata: "
    + orjson.dumps(
        {
            "type": "response.failed",
            "response": {"status": "failed", "error": {"code": "x", "message": SAID}},
        }
    )
    + b"\n\n"
)


@pytest.mark.parametrize(
    ("endpoint", "events"),
    [
        ("chat", [CHUNK, CHAT_ERROR]),
        ("chat", [CHAT_ERROR]),  # nothing held: the no-text shortcut must not skip it
        ("completions", [CHAT_ERROR]),
        ("responses", [RESPONSES_ERROR]),
        ("responses", [RESPONSES_FAILED]),
    ],
)
def test_a_streamed_error_event_is_redacted(endpoint, events):
    out, end, hits = feed_all(PII, endpoint, events)
    assert end is None
    assert EMAIL.encode() not in out and b"1111" not in out
    assert REDACTED.encode() in out
    assert [h.rule for h in hits] == ["email", "credit_card"]


@pytest.mark.parametrize(
    ("endpoint", "events"),
    [
        ("chat", [CHUNK, CHAT_ERROR]),
        ("responses", [RESPONSES_ERROR]),
        ("responses", [RESPONSES_FAILED]),
    ],
)
def test_a_streamed_error_event_a_rule_blocks_ends_the_stream_without_it(endpoint, events):
    out, end, hits = feed_all(BLOCK_CARDS, endpoint, events)
    assert isinstance(end, ContentPolicyViolation)
    assert b"1111" not in out and EMAIL.encode() not in out
    assert hits == [GuardrailHit("credit_card", GuardAction.BLOCK, OUT)]


def test_a_usage_chunk_passes_as_it_came():
    usage = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":1}}\n\n'
    out, end, hits = feed_all(PII, "chat", [usage])
    assert (out, end, hits) == (usage, None, [])
