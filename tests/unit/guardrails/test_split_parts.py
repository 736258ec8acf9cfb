"""A secret split across the text parts of one message: upstreams join the parts, so the
input scan reads them joined, blocks, or redacts each part's share of the match."""

import pytest

from gateway.guardrails.check import check_answer, check_request
from gateway.guardrails.decision import Blocked, Passed
from gateway.guardrails.joined_parts import split_spans
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner

KEY = "AKIAIOSFODNN7EXAMPLE"
BLOCK = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK))])
REDACT = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.REDACT))])
MARK = "[REDACTED:secrets]"


def parts(*texts: str, kind: str = "text") -> list[dict[str, str]]:
    return [{"type": kind, "text": t} for t in texts]


def chat(content: list[dict[str, str]]) -> dict:
    return {"messages": [{"role": "user", "content": content}]}


def responses(content: list[dict[str, str]]) -> dict:
    return {"input": [{"role": "user", "content": content}]}


SPLITS = [
    ("my key is AKIAIOSFO", "DNN7EXAMPLE"),
    ("my key is AKIA", "IOSFODNN7EXAMPLE", " ok"),
    ("AKIA", "IOSF", "ODNN", "7EXA", "MPLE"),
]


@pytest.mark.parametrize("texts", SPLITS)
@pytest.mark.parametrize(
    ("endpoint", "body"), [("chat", lambda c: chat(c)), ("responses", lambda c: responses(c))]
)
def test_a_key_split_across_parts_is_blocked(texts, endpoint, body):
    """The parts of one message joined hold the key: the block rule refuses the request."""
    kind = "text" if endpoint == "chat" else "input_text"
    decision = check_request(BLOCK, endpoint, body(parts(*texts, kind=kind)))
    assert isinstance(decision, Blocked) and decision.rule == "secrets"


def test_a_key_split_across_parts_is_redacted_in_each_part():
    """The marker goes where the key began; the rest of it leaves the later parts, which
    keep their place and type."""
    decision = check_request(REDACT, "chat", chat(parts("my key is AKIAIOSFO", "DNN7EXAMPLE", "!")))
    assert isinstance(decision, Passed)
    assert decision.body["messages"][0]["content"] == parts(f"my key is {MARK}", "", "!")


def test_a_split_key_in_responses_input_text_parts_is_redacted():
    decision = check_request(
        REDACT, "responses", responses(parts("AKIA", f"{KEY[4:]} x", kind="input_text"))
    )
    assert isinstance(decision, Passed)
    assert decision.body["input"][0]["content"] == parts(MARK, " x", kind="input_text")


def test_text_parts_are_joined_across_an_image_part():
    """A text-only upstream drops the image and joins the texts around it."""
    content = [
        {"type": "text", "text": "AKIAIOSFO"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "text", "text": "DNN7EXAMPLE"},
    ]
    assert isinstance(check_request(BLOCK, "chat", chat(content)), Blocked)


def test_a_split_key_in_an_answer_message_s_parts_is_redacted():
    answer = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": parts("AKIAIOSFO", "DNN7EXAMPLE")},
            }
        ]
    }
    decision = check_answer(REDACT, "chat", answer)
    assert isinstance(decision, Passed)
    assert decision.body["choices"][0]["message"]["content"] == parts(MARK, "")


def test_clean_parts_are_not_copied():
    body = chat(parts("hello ", "world"))
    decision = check_request(REDACT, "chat", body)
    assert isinstance(decision, Passed) and decision.body is body


def test_a_key_whole_in_one_part_is_still_found_at_the_part_s_edge():
    """Joined, `xAKIA...` has no word boundary; alone, the part holds the key."""
    decision = check_request(REDACT, "chat", chat(parts("x", KEY)))
    assert isinstance(decision, Passed)
    assert decision.body["messages"][0]["content"] == parts("x", MARK)


@pytest.mark.parametrize(
    ("lengths", "spans", "expected"),
    [
        ([3, 3], [(1, 5, "M")], [[(1, 3, "M")], [(0, 2, "")]]),
        ([2, 2, 2], [(1, 6, "M")], [[(1, 2, "M")], [(0, 2, "")], [(0, 2, "")]]),
        ([2, 2], [(0, 1, "A"), (2, 3, "B")], [[(0, 1, "A")], [(0, 1, "B")]]),
        ([2, 2], [(2, 4, "B")], [[], [(0, 2, "B")]]),
    ],
)
def test_split_spans(lengths, spans, expected):
    assert split_spans(lengths, spans) == expected
