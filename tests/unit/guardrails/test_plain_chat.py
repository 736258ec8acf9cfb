"""The one-pass reading of a plain chat request and answer (plain_chat.py) is the field
by field walk's exactly, on every shape: the texts given to the text function and their
order, the inline cost charged, the result, and whether the body came back unchanged.
Shapes it does not take are left to the walk."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.guardrails.answer_texts import rewrite_answer, walk_answer
from gateway.guardrails.check import check_answer, check_request
from gateway.guardrails.decision import Blocked, Passed
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.plain_chat import counts_only, rewrite_plain_answer, rewrite_plain_request
from gateway.guardrails.request_texts import rewrite_request, walk_request
from gateway.guardrails.scanner import Redaction, Rule, RuleSource, Scanner

TEXTS = st.text(alphabet="abX .", max_size=8)  # the recording function redacts each X


class Recorder:
    """A text function that records what it is given and charged, and redacts each X."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.spent: list[int] = []

    def __call__(self, text: str) -> list[Redaction]:
        self.seen.append(text)
        return [(i, i + 1, "[R]") for i, c in enumerate(text) if c == "X"]

    def spend(self, weight: int) -> None:
        if weight:  # charging nothing (an empty list walked) changes nothing
            self.spent.append(weight)


def same_reading(fast: Any, walk: Any, body: Any, run: Any) -> None:
    """`run(fn)` with the one-pass reader and with the walk: the same in every respect."""
    a, b = Recorder(), Recorder()
    got, want = run(fast, a), run(walk, b)
    assert got == want
    assert (got is body) == (want is body)
    assert a.seen == b.seen
    assert a.spent == b.spent


PLAIN_MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system"]), "content": TEXTS}
)
MESSAGE = st.one_of(
    PLAIN_MESSAGE,
    st.fixed_dictionaries(
        {"role": st.just("user")},
        optional={
            "content": st.one_of(
                TEXTS,
                st.none(),
                st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": TEXTS})),
            ),
            "name": TEXTS,
            "thinking": TEXTS,
            "tool_call_id": TEXTS,
        },
    ),
    st.just("a message that is a string X"),
)
SETTINGS = {
    "model": st.just("gpt-4o"),
    "max_tokens": st.integers(0, 10),
    "temperature": st.floats(0, 2),
    "stream": st.booleans(),
    "user": TEXTS,
    "metadata": st.dictionaries(TEXTS, TEXTS, max_size=2),
}
OTHER_FIELDS = {
    "stream_options": st.one_of(
        st.just({"include_usage": True}), st.just({"include_usage": True, "note": "X"})
    ),
    "stop": st.one_of(TEXTS, st.lists(TEXTS, max_size=2), st.none()),
    "tools": st.just([{"type": "function", "function": {"name": "f", "description": "X"}}]),
    "tool_choice": st.none(),
    "guided_json": TEXTS,
}


@st.composite
def chat_requests(draw: st.DrawFn, message: st.SearchStrategy[Any], fields: dict) -> dict:
    body = draw(st.fixed_dictionaries({}, optional=fields))
    if draw(st.booleans()) or fields is SETTINGS:
        body["messages"] = draw(st.lists(message, max_size=4))
    return body


@given(chat_requests(MESSAGE, {**SETTINGS, **OTHER_FIELDS}))
def test_any_chat_request_reads_as_the_walk_reads_it(body: dict) -> None:
    same_reading(rewrite_request, walk_request, body, lambda read, fn: read("chat", body, fn))


@given(chat_requests(PLAIN_MESSAGE, SETTINGS))
def test_a_plain_chat_request_is_read_in_one_pass(body: dict) -> None:
    fields = frozenset({"messages", *SETTINGS})
    assert rewrite_plain_request(fields, body, Recorder()) is not None
    same_reading(rewrite_request, walk_request, body, lambda read, fn: read("chat", body, fn))


def test_shapes_the_one_pass_leaves_to_the_walk() -> None:
    fields = frozenset({"messages", "model", "stream_options"})
    for body in (
        {"messages": [{"role": "user", "content": "hi", "name": "n"}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
        {"messages": [{"role": "user"}]},
        {"messages": ["hi"]},
        {"messages": "hi"},
        {"model": "m"},
        {"messages": [], "guided_json": "hi"},
        {"messages": [], "stream_options": {"include_usage": True, "note": "hi"}},
    ):
        assert rewrite_plain_request(fields, body, Recorder()) is None, body


PLAIN_CHOICE_MESSAGE = st.fixed_dictionaries(
    {"role": st.just("assistant"), "content": TEXTS},
    optional={"refusal": st.none(), "annotations": st.just([])},
)
CHOICE_MESSAGE = st.one_of(
    PLAIN_CHOICE_MESSAGE,
    st.fixed_dictionaries(
        {"role": st.just("assistant")},
        optional={
            "content": st.one_of(TEXTS, st.none()),
            "refusal": st.one_of(st.none(), TEXTS),
            "annotations": st.just([{"type": "url_citation", "url_citation": {"title": "X"}}]),
            "reasoning_content": TEXTS,
            "tool_calls": st.just([{"id": "c", "function": {"name": "f", "arguments": "{}"}}]),
        },
    ),
)


@st.composite
def chat_answers(draw: st.DrawFn, message: st.SearchStrategy[Any], plain: bool) -> dict:
    choice_fields: dict = {
        "index": st.integers(0, 3),
        "finish_reason": st.just("stop"),
        "logprobs": st.one_of(st.none(), st.just({"content": []})),
        "message": message,
    }
    if not plain:
        choice_fields |= {"text": TEXTS, "stop_reason": TEXTS}
    choice = st.fixed_dictionaries({}, optional=choice_fields)
    usage = st.fixed_dictionaries(
        {"prompt_tokens": st.integers(0, 9)},
        optional={
            "prompt_tokens_details": st.just({"cached_tokens": 0}),
            **({} if plain else {"note": TEXTS}),
        },
    )
    top: dict = {
        "id": st.just("chatcmpl-1"),
        "object": st.just("chat.completion"),
        "model": st.just("m"),
        "system_fingerprint": st.just("fp"),
        "usage": usage,
    }
    if not plain:
        top |= {"citations": st.lists(TEXTS, max_size=2), "error": TEXTS}
    answer = draw(st.fixed_dictionaries({}, optional=top))
    if plain or draw(st.booleans()):
        if plain:
            choice = st.fixed_dictionaries({**choice_fields, "message": message})
        answer["choices"] = draw(st.lists(choice, max_size=3))
    return answer


@given(chat_answers(CHOICE_MESSAGE, plain=False), st.booleans())
def test_any_chat_answer_reads_as_the_walk_reads_it(answer: dict, is_json: bool) -> None:
    same_reading(
        rewrite_answer,
        walk_answer,
        answer,
        lambda read, fn: read("chat", answer, fn, is_json=is_json),
    )


@given(chat_answers(PLAIN_CHOICE_MESSAGE, plain=True))
def test_a_plain_chat_answer_is_read_in_one_pass(answer: dict) -> None:
    assert rewrite_plain_answer(answer, Recorder()) is not None
    same_reading(rewrite_answer, walk_answer, answer, lambda read, fn: read("chat", answer, fn))


PLAIN_ANSWER = {
    "id": "chatcmpl-1",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "aXb", "refusal": None, "annotations": []},
            "logprobs": None,
        }
    ],
    "usage": {"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": 0}},
}
CITATION = {"type": "url_citation", "url_citation": {"title": "X"}}


def _with(path: tuple[Any, ...], value: Any) -> dict:
    """PLAIN_ANSWER with the value at `path` set (copied along the way)."""

    def put(node: Any, keys: tuple[Any, ...]) -> Any:
        if not keys:
            return value
        copy = list(node) if isinstance(node, list) else dict(node)
        copy[keys[0]] = put(node[keys[0]] if len(keys) > 1 else None, keys[1:])
        return copy

    return put(PLAIN_ANSWER, path)


MESSAGE_PATH = ("choices", 0, "message")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ((*MESSAGE_PATH, "refusal"), "X"),
        ((*MESSAGE_PATH, "annotations"), [CITATION]),
        ((*MESSAGE_PATH, "reasoning_content"), "X"),
        (
            (*MESSAGE_PATH, "tool_calls"),
            [{"id": "c", "function": {"name": "f", "arguments": '{"a": "X"}'}}],
        ),
        ((*MESSAGE_PATH, "thinking"), "X"),
        ((*MESSAGE_PATH, "content"), None),
        ((*MESSAGE_PATH, "content"), [{"type": "text", "text": "X"}]),
        (MESSAGE_PATH, "X"),
        (("choices", 0, "text"), "X"),
        (("choices", 0, "stop_reason"), "X"),
        (("choices", 0), "X"),
        (("choices",), "X"),
        (("citations",), ["X"]),
        (("error",), "X"),
        (("message",), "X"),
        (("usage", "note"), "X"),
        (("usage",), "X"),
    ],
)
def test_answers_the_one_pass_leaves_to_the_walk(path: tuple[Any, ...], value: Any) -> None:
    """Each holds a text beyond the messages' content: the walk reads it."""
    answer = _with(path, value)
    assert rewrite_plain_answer(answer, Recorder()) is None
    same_reading(rewrite_answer, walk_answer, answer, lambda read, fn: read("chat", answer, fn))
    assert rewrite_plain_answer(PLAIN_ANSWER, Recorder()) is not None


def test_a_redacted_plain_answer_loses_its_logprobs_and_keeps_the_rest() -> None:
    choice = {"index": 0, "message": {"role": "assistant", "content": "aXb"}, "logprobs": {}}
    answer = {"id": "x", "choices": [choice, {**choice, "index": 1, "message": {"content": "ab"}}]}
    got = rewrite_plain_answer(answer, Recorder())
    assert got == {
        "id": "x",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "a[R]b"}, "logprobs": None},
            answer["choices"][1],
        ],
    }
    assert got["choices"][1] is answer["choices"][1]
    assert answer["choices"][0]["message"]["content"] == "aXb"  # the input is not changed


@given(
    st.recursive(
        st.integers() | st.floats() | st.none() | TEXTS,
        lambda c: st.dictionaries(TEXTS, c, max_size=3),
    )
)
def test_counts_only_means_numbers_at_most_two_levels_down(usage: Any) -> None:
    def numbers(value: Any, depth: int) -> bool:
        if value is None or (isinstance(value, int | float) and not isinstance(value, str)):
            return True
        return (
            isinstance(value, dict)
            and depth < 2
            and all(numbers(v, depth + 1) for v in value.values())
        )

    assert counts_only(usage) == numbers(usage, 0)


SECRETS = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK))])
EMAIL = Scanner([RuleSource(Rule("email", DetectorKind.EMAIL, GuardAction.REDACT))])


def test_the_checks_block_and_redact_a_plain_request_and_answer() -> None:
    """Through the checks the pipeline calls: a key in the second message blocks, an email
    is redacted where it is, and a clean request passes as the same object."""
    key = {"role": "user", "content": "my key AKIAIOSFODNN7EXAMPLE"}
    body = {"model": "m", "messages": [{"role": "system", "content": "hi"}, key]}
    assert isinstance(check_request(SECRETS, "chat", body), Blocked)
    mail = {"model": "m", "messages": [{"role": "user", "content": "write to a@b.example"}]}
    redacted = check_request(EMAIL, "chat", mail)
    assert isinstance(redacted, Passed)
    assert redacted.body["messages"][0]["content"] == "write to [REDACTED:email]"
    clean = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    passed = check_request(EMAIL, "chat", clean)
    assert isinstance(passed, Passed) and passed.body is clean and not passed.hits
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "a@b.example"}}]}
    out = check_answer(EMAIL, "chat", answer)
    assert isinstance(out, Passed)
    assert out.body["choices"][0]["message"]["content"] == "[REDACTED:email]"
