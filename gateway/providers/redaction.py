"""Our provider keys out of what an upstream says, before a client sees it. Pure; no I/O.

An upstream may echo the request's credentials (`Incorrect API key provided: Bearer
sk-...`, a proxy quoting the `api-key` header it got). A non-streamed error's fields
are cleaned with `clean_message`; on a stream, every error event the gateway relays
gets the same cleaning (`redact_error_events`), whatever JSON escaping the upstream
used. Events that are not errors pass untouched: a stream's content is the model's.
This is ours alone; a team's output guardrails apply to the same error texts later, in
the pipeline (guardrails/stage.py `guard_upstream_error`, texts.py `rewrite_error`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, cast

import orjson

from gateway.providers.base import MASKED_KEY
from gateway.providers.error_shape import error_fields_of, openai_error
from gateway.sse import ERROR_EVENT_LINES, events_of, is_error_event

_URL = re.compile(r"https?://\S+")
_KEY_LIKE = re.compile(r"\b(sk-[A-Za-z0-9_\-]{6,}|[A-Fa-f0-9]{32,})\b")
# Every error event spells this (chat's `{"error": ...}`, Responses' `"type":"error"` and
# a failed response's `"error": {...}`); a chunk without it holds no error to clean.
ERROR_KEY = b'"error"'
# A failed or incomplete Responses object's reason: upstream text too.
INCOMPLETE_KEY = b'"incomplete_details"'
ERROR_LINES = ERROR_EVENT_LINES  # Responses' `error` event
REDACTED = "[redacted]"
# A relayed mid-stream error event with no message (or type) of its own says this.
MID_STREAM_MESSAGE = "The upstream failed mid-stream."
MID_STREAM_TYPE = "api_error"


def redact_keys(text: str, secrets: Sequence[str]) -> str:
    """Remove our provider keys, and anything shaped like a key, from upstream text."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    if "****" in text:  # rare: skip the regex for nearly every message
        text = MASKED_KEY.sub(REDACTED, text)
    return _KEY_LIKE.sub(REDACTED, text)


def clean_message(message: str, secrets: Sequence[str]) -> str:
    """Remove provider URLs and keys from an upstream's error text (for the caller)."""
    return redact_keys(_URL.sub("[upstream]", message), secrets)


def secret_spellings(secrets: Sequence[str]) -> tuple[str, ...]:
    """Each key as written and as a JSON string spells it (escaped, and with `\\/`),
    longest first; worked out once per provider. Text that parses as JSON is cleaned
    after decoding, so any escape is caught there; these are for text that does not."""
    spellings: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        escaped = orjson.dumps(secret).decode()[1:-1]
        for spelling in (secret, escaped):
            spellings.update((spelling, spelling.replace("/", "\\/")))
    return tuple(sorted(spellings, key=len, reverse=True))


def redact_error_events(chunk: bytes, secrets: Sequence[str]) -> bytes:
    """`chunk` (whole SSE events) with each error event cleaned as a non-streamed error is.

    `secrets` are the provider's `secret_spellings`. Only chunks holding a non-null
    `ERROR_KEY` or `INCOMPLETE_KEY` need this (the caller checks, bytes only, per read). An
    error event that parses keeps its shape: every string of its JSON (keys too) goes
    through `clean_message`; a Responses event's response object has its `error` and
    `incomplete_details` cleaned as a whole answer's are (`clean_error_of`), its output
    left as it is. One that does not parse has every spelling of our keys, and key-shaped
    text, redacted in place.
    """
    events = events_of(chunk)
    cleaned = [_clean_event(event, secrets) if _may_fail(event) else event for event in events]
    return b"".join(cleaned)


def _may_fail(event: bytes) -> bool:
    return ERROR_KEY in event or INCOMPLETE_KEY in event


def _clean_event(event: bytes, secrets: Sequence[str]) -> bytes:
    lines = event.split(b"\n")
    data_at = [i for i, line in enumerate(lines) if line.startswith(b"data:")]
    if len(data_at) == 1:
        line = lines[data_at[0]]
        try:
            parsed = orjson.loads(line[5:])
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and _says_failure(parsed, event):
            clean = _cleaned(parsed, event, secrets)
            if clean == parsed:
                return event
            lines[data_at[0]] = b"data: " + orjson.dumps(clean)
            out = b"\n".join(lines)
            if not any(secret.encode() in out for secret in secrets):
                return out
        elif parsed is not None:
            return event  # well-formed and not an error (a Responses `"error": null`)
    text = event.decode("utf-8", errors="replace")
    return redact_keys(text, secrets).encode()


def _says_failure(parsed: dict[str, Any], event: bytes) -> bool:
    """An error event, or a Responses event whose response says why it failed or stopped."""
    if is_error_event(parsed, event):
        return True
    response = parsed.get("response")
    return isinstance(response, dict) and any(response.get(name) for name in FAILURE_FIELDS)


def _cleaned(parsed: dict[str, Any], event: bytes, secrets: Sequence[str]) -> dict[str, Any]:
    if parsed.get("error") and parsed.get("type") != "error":
        # Chat's and completions' error event (the SDK's rule), in whatever shape the
        # upstream wrote it (a vLLM string, no `param`): as OpenAI sends one.
        error = openai_error(error_fields_of(parsed), MID_STREAM_MESSAGE, MID_STREAM_TYPE)
        return {"error": _clean_strings(error, secrets)}
    if is_error_event(parsed, event):  # all upstream text about its failure
        return cast(dict[str, Any], _clean_strings(parsed, secrets))
    return {**parsed, "response": clean_error_of(parsed["response"], secrets)}


def _clean_strings(value: Any, secrets: Sequence[str]) -> Any:
    if isinstance(value, str):
        return clean_message(value, secrets)
    if isinstance(value, dict):
        return {clean_message(k, secrets): _clean_strings(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_strings(v, secrets) for v in value]
    return value


# What a whole answer may say of its own failure, in upstream text: a failed or incomplete
# Responses object's `error` and `incomplete_details`, any answer's `error`.
FAILURE_FIELDS = ("error", "incomplete_details")


def clean_error_of(answer: dict[str, Any], secrets: Sequence[str]) -> dict[str, Any]:
    """A whole answer with every string of its `error` and `incomplete_details` cleaned (a
    failed Responses object): the answer itself, the model's text, is left as it is."""
    cleaned = {
        name: _clean_strings(answer[name], secrets) for name in FAILURE_FIELDS if answer.get(name)
    }
    return {**answer, **cleaned}
