"""Does an upstream's 200 answer say it failed? Pure; no I/O.

Some servers (proxies, aggregators) answer HTTP 200 with only an error object
(`{"error": {"message": "provider overloaded", "code": 502}}`). That is no answer:
the attempt failed, as on a 5xx, and the request fails over. A Responses object
whose `status` is `failed` is the API's own answer: relayed, its `error` cleaned of
our key and the upstream's URL (redaction.py) as a relayed 4xx's fields are.
"""

from __future__ import annotations

from typing import Any

from gateway.providers.redaction import ERROR_KEY

# What an answer carries: chat and completions `choices`, embeddings `data`.
ANSWER_FIELDS = ("choices", "data")
_SEPARATORS = b" \t\r\n:"


def may_hold_error(body: bytes) -> bool:
    """Might a whole answer hold a non-null `"error"`? Bytes only, no parse: every
    answer pays it. A Responses object always spells `"error": null` (skipped); a yes
    that is wrong costs only a parse."""
    at = body.find(ERROR_KEY)
    while at != -1:
        end = at + len(ERROR_KEY)
        if not body[end : end + 16].lstrip(_SEPARATORS).startswith(b"null"):
            return True
        at = body.find(ERROR_KEY, end)
    return False


def is_error_answer(answer: dict[str, Any]) -> bool:
    """Is this 200 body an error in place of an answer (then the attempt failed)?"""
    if not answer.get("error") or answer.get("object") == "response":
        return False
    return not any(answer.get(name) for name in ANSWER_FIELDS)


def error_of(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer's error as an object (for the operator's log summary)."""
    error = answer.get("error")
    return error if isinstance(error, dict) else {"message": str(error)}
