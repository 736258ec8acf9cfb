"""A guardrail decision to refuse, as the error the pipeline raises (one place).

`refusal(blocked)` picks the GatewayError for each BlockReason. The errors that only
guardrails raise, beyond errors.py's ContentPolicyViolation, are here: they keep its
status and code (400 content_policy_violation naming the rule) with a message that
says what the caller can change. None of them echoes the request's text.
"""

from __future__ import annotations

from gateway.errors import (
    ContentPolicyViolation,
    GatewayError,
    GuardrailUnavailable,
    InvalidRequest,
    InvalidValue,
)
from gateway.guardrails.check import MAX_MATCHES
from gateway.guardrails.decision import Blocked, BlockReason
from gateway.guardrails.kinds import Where


class TooManyMatches(ContentPolicyViolation):
    """More matches of the guardrail rules than one request or answer may cost."""

    def __init__(self, rule: str, limit: int, *, on_output: bool = False) -> None:
        what = "answer" if on_output else "request"
        InvalidRequest.__init__(
            self,
            f"The {what} was blocked: it holds more than {limit} matches of the guardrail "
            f"rules (the rule '{rule}' among them), more than the gateway checks in one "
            f"{what}. Send the text in smaller parts.",
        )
        self.detail = f"guardrail {rule}: over {limit} matches in the {what}"


class TokenIdsNotRedactable(ContentPolicyViolation):
    """A redact rule fired in a prompt sent as token ids: the gateway cannot rewrite ids."""

    def __init__(self, rule: str, param: str) -> None:
        InvalidRequest.__init__(
            self,
            f"The request was blocked by the guardrail rule '{rule}': it redacts text "
            f"that the token ids of '{param}' encode, and the gateway does not rewrite "
            "token ids. Send that prompt as text to have it redacted.",
            param=param,
        )
        self.detail = f"guardrail {rule} would redact token ids in {param}"


class NameNotRedactable(ContentPolicyViolation):
    """A redact rule matched a name (a tool's, a schema property's, ...): renamed, it
    would break the tool or the structured output, so the request is refused."""

    def __init__(self, rule: str) -> None:
        InvalidRequest.__init__(
            self,
            f"The request was blocked by the guardrail rule '{rule}': it redacts text in a "
            "name the upstream reads as one (a tool, function or format name, a schema's "
            "property name, a `required` entry, a `format` or a `$ref`), and the gateway "
            "does not rename them, which would break the tool or the structured output. "
            "Rename it.",
        )
        self.detail = f"guardrail {rule} would redact a name"


def unreadable_token_ids(param: str) -> InvalidValue:
    """Token ids the guardrails cannot read are not sent unchecked."""
    return InvalidValue(
        f"'{param}' holds token ids that no encoding the gateway knows (o200k_base, "
        "cl100k_base) can read, or items that are not token ids; this team's guardrails "
        "check every prompt, so send it as text or as valid token ids.",
        param=param,
    )


def withheld_message(rule: str) -> str:
    """An upstream's error message a `block` rule stopped: the status, type and code
    stay the upstream's (they say what went wrong); the text is not sent."""
    return (
        f"The upstream refused the request; its message was withheld by the guardrail "
        f"rule '{rule}'."
    )


def refusal(blocked: Blocked) -> GatewayError:
    on_output = blocked.where is Where.OUTPUT
    if blocked.reason is BlockReason.UNAVAILABLE:
        return GuardrailUnavailable(blocked.rule, blocked.why)
    if blocked.reason is BlockReason.TOO_MANY_MATCHES:
        return TooManyMatches(blocked.rule, MAX_MATCHES, on_output=on_output)
    if blocked.reason is BlockReason.TOKEN_IDS_NOT_REDACTABLE:
        return TokenIdsNotRedactable(blocked.rule, blocked.param or "prompt")
    if blocked.reason is BlockReason.NAME_NOT_REDACTABLE:
        return NameNotRedactable(blocked.rule)
    return ContentPolicyViolation(blocked.rule, on_output=on_output)
