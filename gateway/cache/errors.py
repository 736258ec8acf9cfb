"""The cache's one refusal, as a GatewayError subclass."""

from __future__ import annotations

from gateway.errors import GatewayError


class NotCached(GatewayError):
    """`Cache-Control: only-if-cached` and no stored answer may serve the request: 504,
    as an HTTP cache answers it (RFC 9111 §5.2.1.7). The client's own choice, so a
    refusal on the books, and not worth retrying (`x-should-retry: false` stops the
    official SDKs' automatic retries of a 5xx)."""

    status = 504
    type = "invalid_request_error"
    code = "not_cached"


def not_cached() -> NotCached:
    return NotCached(
        "No cached answer may serve this request, and its Cache-Control says "
        "only-if-cached: the upstream was not called.",
        headers={"x-should-retry": "false"},
    )
