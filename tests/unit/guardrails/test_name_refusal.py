"""A redact rule matching a name refuses the request, and the refusal names what counts
as a name (probe p12: it listed enum and const values, patterns and grammars, which are
redacted, not refused)."""

from __future__ import annotations

from gateway.guardrails.check import check_request
from gateway.guardrails.decision import Blocked, BlockReason, Passed
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.refusals import NameNotRedactable
from gateway.guardrails.scanner import Rule, RuleSource, Scanner

EMAILS = Scanner([RuleSource(Rule("pii", DetectorKind.EMAIL, GuardAction.REDACT))])


def _tool(name: str, enum: list[str]) -> dict[str, object]:
    schema = {"type": "object", "properties": {"to": {"type": "string", "enum": enum}}}
    return {"type": "function", "function": {"name": name, "parameters": schema}}


def _body(tool: dict[str, object]) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [tool]}


def test_an_email_in_an_enum_is_redacted_and_one_in_a_tool_name_refused() -> None:
    passed = check_request(EMAILS, "chat", _body(_tool("send", ["bob@example.com"])))
    assert isinstance(passed, Passed)
    function = passed.body["tools"][0]["function"]  # type: ignore[index]
    assert function["parameters"]["properties"]["to"]["enum"] == ["[REDACTED:pii]"]
    refused = check_request(EMAILS, "chat", _body(_tool("bob@example.com", ["a"])))
    assert isinstance(refused, Blocked) and refused.reason is BlockReason.NAME_NOT_REDACTABLE


def test_the_refusal_lists_names_only() -> None:
    message = NameNotRedactable("pii").message
    assert "tool, function or format name" in message and "property name" in message
    for redacted_not_refused in ("enum", "const", "pattern", "grammar"):
        assert redacted_not_refused not in message
