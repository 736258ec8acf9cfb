"""The limits' errors, as GatewayError subclasses (answers.py builds them).

Their own module because answers.py is compiled with mypyc (native.py), which does not
keep a subclass's class attributes (status, type, code) on a class it compiles.
"""

from __future__ import annotations

from gateway.errors import GatewayError


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class BudgetExhausted(GatewayError):
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"


# A store that did not answer within its timeout (0.5 s) may well answer a second later;
# the SDKs wait this long before their retry (README's failure table promises it).
LIMITS_RETRY_AFTER_S = 1


class LimitsUnavailable(GatewayError):
    """The limits backend did not answer and the policy says `on_backend_error: closed`
    (or the usage view could not read it): retryable, with `retry-after`."""

    status = 503
    type = "api_error"
    code = "limits_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"retry-after": str(LIMITS_RETRY_AFTER_S)})
