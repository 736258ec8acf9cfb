"""Does an upstream stream's first event say the attempt failed? Pure; no I/O.

An upstream may accept a stream (200, text/event-stream) and then send only an error
event (`data: {"error": ...}`, the Responses `error` event), or bytes that are not
JSON. Nothing useful has reached the client yet, so that is still "before the first
token": the attempt fails and the request fails over, as for a 5xx. Only the first
event is read, once per attempt; later events are the relay's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from gateway.providers.redaction import ERROR_LINES
from gateway.sse import DONE_PAYLOAD, EVENT_END


class FailedStart(NamedTuple):
    reason: str  # for the operator's log
    error: dict[str, Any]  # the upstream's error object ({} when it gave none)


def failed_start(chunk: bytes) -> FailedStart | None:
    """Why the first event of `chunk` (whole SSE events) fails the attempt, or None.

    None for an event without data (an SSE comment). A `[DONE]` first is an end before
    any answer: the attempt failed, as an empty stream's does.
    """
    end = chunk.find(EVENT_END)
    event = chunk if end == -1 else chunk[: end + 1]
    data = [line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")]
    if not data:
        return None
    payload = b"\n".join(data)  # SSE joins a multi-line payload with newlines
    if payload == DONE_PAYLOAD:
        return FailedStart("stream ended before its first event", {})
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return FailedStart("stream began with an event that is not JSON", {})
    if not isinstance(parsed, dict):
        return FailedStart("stream began with an event that is not a JSON object", {})
    error = parsed.get("error")
    if error:  # the SDK's own test (`data.get("error")`): it would raise on this event
        found = error if isinstance(error, dict) else {"message": str(error)}
        return FailedStart("stream began with an error event", found)
    if parsed.get("type") == "error" or event.startswith(ERROR_LINES):
        return FailedStart("stream began with an error event", parsed)
    return None
