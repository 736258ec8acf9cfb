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


def refusal(blocked: Blocked) -> GatewayError:
    on_output = blocked.where is Where.OUTPUT
    if blocked.reason is BlockReason.UNAVAILABLE:
        return GuardrailUnavailable(blocked.rule, blocked.why)
    if blocked.reason is BlockReason.TOO_MANY_MATCHES:
        return TooManyMatches(blocked.rule, MAX_MATCHES, on_output=on_output)
    return ContentPolicyViolation(blocked.rule, on_output=on_output)
