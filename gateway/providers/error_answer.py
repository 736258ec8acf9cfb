"""Does an upstream's 200 answer say it failed? Pure; no I/O.

A 200 JSON object that is no answer of the endpoint asked (`{}`, `{"foo": 1}`,
`{"choices": "x"}`: a misrouted or half-implemented server) failed too: the SDKs
would raise on it (`choices` None). `missing_answer` looks at one top-level key's type,
no deeper: it runs on every answer.

Some servers (proxies, aggregators) answer HTTP 200 with only an error object
(`{"error": {"message": "provider overloaded", "code": 502}}`). That is no answer:
the attempt failed, as on a 5xx, and the request fails over. A Responses object
whose `status` is `failed` (or `incomplete`) is the API's own answer: relayed, its `error`
and `incomplete_details` cleaned of our key and the upstream's URL (redaction.py) as a
relayed 4xx's fields are; a failed one is booked as the upstream's failure (pipeline.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.providers.base import Endpoint
from gateway.providers.redaction import ERROR_KEY, INCOMPLETE_KEY, redact_keys

# What an answer carries: chat and completions `choices`, embeddings `data`.
ANSWER_FIELDS = ("choices", "data")
# The list each endpoint's answer carries (empty is an answer: Azure's content filter
# sends `choices: []`, a failed Responses object `output: []`).
ANSWER_LIST: dict[Endpoint, str] = {
    "chat": "choices",
    "completions": "choices",
    "embeddings": "data",
    "responses": "output",
}
_SEPARATORS = b" \t\r\n:"


def may_hold_error(body: bytes) -> bool:
    """Might a whole answer (or a chunk of stream events) hold a non-null `"error"`, or a
    non-null `"incomplete_details"` (a Responses object's reason, upstream text too)? Bytes
    only, no parse: every answer and every stream read pays it. A Responses object always
    spells both as null (skipped); a yes that is wrong costs only a parse."""
    return _has_non_null(body, ERROR_KEY) or _has_non_null(body, INCOMPLETE_KEY)


def _has_non_null(body: bytes, key: bytes) -> bool:
    at = body.find(key)
    while at != -1:
        end = at + len(key)
        if not body[end : end + 16].lstrip(_SEPARATORS).startswith(b"null"):
            return True
        at = body.find(key, end)
    return False


def is_failed_response(answer: dict[str, Any]) -> bool:
    """Is this whole answer a Responses object that failed (the API's own failure, relayed
    as it came, booked as the upstream's)?"""
    return answer.get("object") == "response" and answer.get("status") == "failed"


def is_error_answer(answer: dict[str, Any]) -> bool:
    """Is this 200 body an error in place of an answer (then the attempt failed)?"""
    if not answer.get("error") or answer.get("object") == "response":
        return False
    return not any(answer.get(name) for name in ANSWER_FIELDS)


def missing_answer(endpoint: Endpoint, answer: dict[str, Any]) -> str | None:
    """Why a 200 JSON object is no answer of `endpoint` (for the operator's log), or None.

    An object with a non-null `error` is left to the error rules above (relayed or failed
    over as before), whatever else it lacks."""
    key = ANSWER_LIST[endpoint]
    if isinstance(answer.get(key), list) or answer.get("error"):
        return None
    return f"response has no `{key}` list"


def error_of(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer's error as an object (for the operator's log summary)."""
    error = answer.get("error")
    return error if isinstance(error, dict) else {"message": str(error)}


def error_summary(
    error: Mapping[str, Any], secrets: tuple[str, ...], names: tuple[str, ...] = ("type", "code")
) -> str:
    """`names` (`type`/`code`; Gemini's type is its `status`) of an upstream error for the
    operator's log (no message: it may quote the conversation); "" when it has none."""
    parts = [
        f"{name}={redact_keys(str(error[name]), secrets)[:80]}"
        for name in names
        if isinstance(error.get(name), str | int) and error.get(name) != ""
    ]
    return f" ({', '.join(parts)})" if parts else ""
