"""A text position holding an object or an array instead of a string (a part's `text`, a
message's `name`, arguments as an object, an unknown Responses item) is scanned whole,
every string and key in it, as a field the gateway does not know is: a secret in it
blocks, an address in it is redacted in place (the same JSON shape)."""

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.guardrails.check import check_request, check_request_inline
from gateway.guardrails.decision import Blocked, BlockReason, Passed
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner

KEY = "AKIAIOSFODNN7EXAMPLE"
EMAIL = "bob@example.com"
MARK = "[REDACTED:email]"
SCANNER = Scanner(
    [
        RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK)),
        RuleSource(Rule("email", DetectorKind.EMAIL, GuardAction.REDACT)),
    ]
)


def user(content: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}]}


def assistant_call(arguments: Any) -> dict[str, Any]:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    return {"messages": [{"role": "assistant", "content": None, "tool_calls": [call]}]}


# (endpoint, a body holding `s` somewhere inside a non-string text position)
PLACES: list[tuple[str, Any]] = [
    ("chat", lambda s: user([{"type": "text", "text": {"x": s}}])),
    ("chat", lambda s: user([{"type": "text", "text": [s]}])),
    ("chat", lambda s: {"messages": [{"role": "system", "content": [{"type": "text", "text": {"x": s}}]}]}),
    ("chat", lambda s: {"messages": [{"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": {"x": s}}]}]}),
    ("chat", lambda s: {"messages": [{"role": "user", "name": {"a": s}, "content": "hi"}]}),
    ("chat", lambda s: assistant_call({"k": s})),
    ("chat", lambda s: assistant_call([s])),
    ("chat", lambda s: {"messages": [{"role": "assistant", "content": [{"type": "refusal", "refusal": {"x": s}}]}]}),
    ("chat", lambda s: {"messages": [], "prediction": {"type": "content", "content": {"a": s}}}),
    ("chat", lambda s: user({"text": s})),
    ("chat", lambda s: user([[s]])),
    ("chat", lambda s: {"messages": [], "stop": [[s]]}),
    ("completions", lambda s: {"prompt": {"a": s}}),
    ("completions", lambda s: {"prompt": "hi", "suffix": {"a": s}}),
    ("embeddings", lambda s: {"input": [{"a": s}]}),
    ("responses", lambda s: {"input": [{"role": "user", "content": {"text": s}}]}),
    ("responses", lambda s: {"input": [{"role": "user", "content": [{"type": "input_text", "text": {"a": s}}]}]}),
    ("responses", lambda s: {"input": [{"type": "function_call_output", "call_id": "c", "output": {"a": s}}]}),
    ("responses", lambda s: {"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {"k": s}}]}),
    ("responses", lambda s: {"input": [{"type": "foo_item", "data": s}]}),
    ("responses", lambda s: {"input": [{"type": "foo_item", "data": {"deep": [s]}}]}),
    ("responses", lambda s: {"input": "hi", "instructions": {"a": s}}),
    ("responses", lambda s: {"input": "hi", "prompt": {"id": "p", "variables": {"v": {"a": s}}}}),
    ("responses", lambda s: {"input": "hi", "prompt": {"id": "p", "variables": [s]}}),
    ("responses", lambda s: {"input": [[s]]}),
    # A text key on a part of another type, a call or message that is not an object.
    ("chat", lambda s: user([{"type": "image_url", "image_url": {"url": "u"}, "text": s}])),
    ("chat", lambda s: user([{"type": "text", "text": "hi", "refusal": {"a": s}}])),
    ("chat", lambda s: {"messages": [{"role": "assistant", "tool_calls": [[s]]}]}),
    ("chat", lambda s: {"messages": [[s]]}),
]  # fmt: skip


@pytest.mark.parametrize(("endpoint", "place"), PLACES)
def test_a_key_inside_an_object_in_a_text_position_blocks(endpoint, place):
    """The object is scanned whole: a secret anywhere in it blocks the request."""
    decision = check_request(SCANNER, endpoint, place(KEY))
    assert isinstance(decision, Blocked) and decision.rule == "secrets"


@pytest.mark.parametrize(("endpoint", "place"), PLACES)
def test_an_address_inside_an_object_in_a_text_position_is_redacted_in_place(endpoint, place):
    """A redaction keeps the value's JSON shape: only the string that held it changes."""
    decision = check_request(SCANNER, endpoint, place(f"mail {EMAIL}"))
    assert isinstance(decision, Passed)
    assert decision.body == place(f"mail {MARK}")


@pytest.mark.parametrize(("endpoint", "place"), PLACES)
def test_a_clean_object_in_a_text_position_goes_as_it_came(endpoint, place):
    """Nothing matched: the very same body, nothing copied."""
    body = place("hello")
    decision = check_request(SCANNER, endpoint, body)
    assert isinstance(decision, Passed) and decision.body is body


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("chat", user([{"type": "text", "text": {EMAIL: "x"}}])),
        ("chat", assistant_call({EMAIL: 1})),
        ("responses", {"input": [{"type": "foo_item", EMAIL: "x"}]}),
        ("responses", {"input": [{"type": "foo_item", "data": {EMAIL: "x"}}]}),
        ("chat", {"messages": [], EMAIL: 1}),  # an unknown field's own name
        ("chat", {"messages": [{"role": "user", "content": "hi", EMAIL: 1}]}),
    ],
)
def test_a_redact_rule_matching_a_key_in_such_an_object_refuses(endpoint, body):
    """A key is a name: renamed, it would change what the upstream reads; refused instead."""
    decision = check_request(SCANNER, endpoint, body)
    assert isinstance(decision, Blocked) and decision.rule == "email"
    assert decision.reason is BlockReason.NAME_NOT_REDACTABLE


def test_an_unknown_items_ids_are_not_texts():
    """An unknown item's `type`, `id`, `call_id` and `status` are structural, not scanned."""
    item = {"type": "foo_item", "id": EMAIL, "call_id": EMAIL, "status": EMAIL, "data": "ok"}
    body = {"input": [item]}
    decision = check_request(SCANNER, "responses", body)
    assert isinstance(decision, Passed) and decision.body is body and not decision.hits


def test_a_huge_object_in_a_text_position_goes_to_a_thread():
    """Walking it is charged to the inline budget: past it, the check is handed over."""
    body = user([{"type": "text", "text": {"k": [0] * 100_000}}])
    assert check_request_inline(SCANNER, "chat", body) is None
    assert isinstance(check_request(SCANNER, "chat", body), Passed)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(alphabet="abc", max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)


def _with_key(value: Any, path: list[int]) -> Any:
    """`value` with the key placed somewhere inside it (`path` picks where)."""
    if not path:
        return [value, KEY]
    step, rest = path[0], path[1:]
    if isinstance(value, list) and value:
        i = step % len(value)
        return [*value[:i], _with_key(value[i], rest), *value[i + 1 :]]
    if isinstance(value, dict) and value:
        k = list(value)[step % len(value)]
        return {**value, k: _with_key(value[k], rest)}
    return {"k": value, "v": KEY}


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(PLACES),
    JSON_VALUES,
    st.lists(st.integers(min_value=0, max_value=7), max_size=5),
)
def test_any_json_value_in_a_text_position_with_a_key_inside_blocks(place, value, path):
    """Whatever JSON a text position holds, a secret anywhere in it blocks."""
    endpoint, build = place
    body = json.loads(json.dumps(build(_with_key(value, path))))
    decision = check_request(SCANNER, endpoint, body)
    assert isinstance(decision, Blocked) and decision.rule == "secrets"
