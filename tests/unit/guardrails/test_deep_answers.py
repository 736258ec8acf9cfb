"""A whole answer nested deeper than a request may (api/body.py MAX_DEPTH) is scanned to
its last level: a key at any depth is blocked or redacted, never passed unscanned."""

from typing import Any

import pytest

from gateway.guardrails.check import check_answer
from gateway.guardrails.decision import Blocked, BlockReason, Passed
from gateway.guardrails.json_texts import rewrite_json
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner

KEY = "AKIAIOSFODNN7EXAMPLE"
MARK = "[REDACTED:secrets]"
BLOCK = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK))])
REDACT = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.REDACT))])
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"


def nested(depth: int, inner: Any) -> Any:
    """`inner` under `depth` levels of alternating objects and lists."""
    value = inner
    for level in range(depth):
        value = {"d": value} if level % 2 else [value]
    return value


def answer(extra: Any) -> dict[str, Any]:
    message = {"role": "assistant", "content": "hi", "provider_extra": extra}
    return {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}


@pytest.mark.parametrize("depth", [127, 129, 200, 900])
def test_a_key_nested_at_any_depth_of_an_answer_is_blocked(depth):
    decision = check_answer(BLOCK, "chat", answer(nested(depth, f"key {KEY}")))
    assert isinstance(decision, Blocked)


@pytest.mark.parametrize("depth", [200, 300, 900])
def test_a_key_nested_deep_in_an_answer_under_a_redact_rule_blocks_it(depth):
    """Past a request's depth nothing is rewritten (the gateway could not write it back):
    the redact rule refuses the answer as a block would, and the key never leaves."""
    decision = check_answer(REDACT, "chat", answer(nested(depth, f"key {KEY}")))
    assert isinstance(decision, Blocked) and decision.rule == "secrets"
    assert decision.reason is BlockReason.MATCHED


def test_a_key_nested_at_a_request_s_depth_is_still_redacted_in_place():
    decision = check_answer(REDACT, "chat", answer(nested(100, f"key {KEY}")))
    assert isinstance(decision, Passed)
    extra = decision.body["choices"][0]["message"]["provider_extra"]
    assert extra == nested(100, f"key {MARK}")


def test_a_key_in_a_deep_object_s_name_blocks_the_answer():
    """A name is never rewritten (json_texts.py): a redact rule matching one deep down
    refuses the answer, as it does near the top."""
    decision = check_answer(REDACT, "chat", answer(nested(300, {KEY: 1})))
    assert isinstance(decision, Blocked)


def test_a_multi_line_secret_deep_down_is_read_as_its_text():
    """The deep string is read as the client reads it, its newlines as newlines."""
    decision = check_answer(BLOCK, "chat", answer(nested(300, PEM)))
    assert isinstance(decision, Blocked)


def test_a_clean_deep_value_is_returned_as_it_came():
    value = nested(600, ["clean", {"a": "b"}, 1, None])
    assert rewrite_json(value, lambda text: ()) is value


def test_a_deep_value_s_texts_are_each_scanned_once_in_order():
    seen: list[str] = []
    value = nested(300, ["x1", {"k": "x2"}, ["x3"]])
    rewrite_json(value, lambda text: seen.append(text) or ())
    assert [s for s in seen if s.startswith("x")] == ["x1", "x2", "x3"]
