"""Does an upstream stream's first event say the attempt failed? Pure; no I/O.

An upstream may accept a stream (200, text/event-stream) and then send only an error
event (`data: {"error": ...}`, the Responses `error` event), bytes that are not JSON,
or an object that is no event of the endpoint asked (`{}`: a chat chunk without
`choices`, a Responses event without `type`). Nothing useful has reached the client
yet, so that is still "before the first token": the attempt fails and the request
fails over, as for a 5xx. Only the first event is read, once per attempt; later events
are the relay's.

Later events get a cheaper look (`readable_part`, every read): the official SDK parses
each data event as JSON and raises `JSONDecodeError` inside the client's loop at one it
cannot, so the stream is cut before such an event, and the request fails as an
upstream's mid-stream failure does. An event whose data is empty (a keep-alive some
servers send) carries nothing and would trip the SDK the same way: it is dropped.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from gateway.providers.base import Endpoint
from gateway.providers.redaction import ERROR_LINES
from gateway.sse import DONE_PAYLOAD, EVENT_END, UNREADABLE, data_of, events_of, read_leniently

# What a first event carries, by its type: a chat or completions chunk its `choices` (a
# list, empty in Azure's first, its prompt filter's results), a Responses event its `type`.
FIRST_EVENT_KEYS: dict[Endpoint, tuple[str, type]] = {
    "chat": ("choices", list),
    "completions": ("choices", list),
    "responses": ("type", str),
}


class FailedStart(NamedTuple):
    reason: str  # for the operator's log
    error: dict[str, Any]  # the upstream's error object ({} when it gave none)


def failed_start(chunk: bytes, endpoint: Endpoint | None = None) -> FailedStart | None:
    """Why the first event of `chunk` (whole SSE events) fails the attempt, or None.

    None for an event without data (an SSE comment). A `[DONE]` first is an end before
    any answer: the attempt failed, as an empty stream's does. With `endpoint`, an event
    without its key (FIRST_EVENT_KEYS: one type check, no deeper) fails it too.
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
    except orjson.JSONDecodeError:  # JSON to the SDK's reader (a lone surrogate) is JSON
        parsed = read_leniently(payload)
        if parsed is UNREADABLE:
            return FailedStart("stream began with an event that is not JSON", {})
    if not isinstance(parsed, dict):
        return FailedStart("stream began with an event that is not a JSON object", {})
    error = parsed.get("error")
    if error:  # the SDK's own test (`data.get("error")`): it would raise on this event
        found = error if isinstance(error, dict) else {"message": str(error)}
        return FailedStart("stream began with an error event", found)
    if parsed.get("type") == "error" or event.startswith(ERROR_LINES):
        return FailedStart("stream began with an error event", parsed)
    expected = FIRST_EVENT_KEYS.get(endpoint) if endpoint is not None else None
    if expected is not None and not isinstance(parsed.get(expected[0]), expected[1]):
        return FailedStart(f"stream began with an event that has no `{expected[0]}`", {})
    return None


# An event whose data line opens a JSON object with a key and ends the event closing one:
# what every OpenAI-shaped event is. Two bytes checks, no parse.
OBJECT_OPENS = (b'data: {"', b'data:{"')
OBJECT_OPENS_LATER = (b'\ndata: {"', b'\ndata:{"')  # after an `event:` line (Responses)
OBJECT_CLOSES = b"}\n\n"
_KEEP, _DROP, _BROKEN = 0, 1, 2


def readable_part(chunk: bytes) -> tuple[bytes, bool]:
    """`chunk` (whole SSE events) up to its first event whose data cannot be a JSON object
    (cut there: True), less the events whose data is empty. Comments and `[DONE]` (any
    event whose data starts with it: the SDK's test) pass.

    Bytes only: the event must open `{` followed by a key or `}`, and end `}`. That is
    what a cut-short or garbled event fails (`{"id":`, `{garbage`, `<html>`); an event
    broken only inside passes, and the SDK's parse is then the judge.
    """
    if chunk.find(EVENT_END) == len(chunk) - 2:  # one event (the usual one-line JSON event
        # never gets here: openai_compat._read passes it on its own three bytes checks)
        verdict = _judge(chunk)
        if verdict == _KEEP:
            return chunk, False
        return b"", verdict == _BROKEN
    kept: list[bytes] = []
    changed = False
    for event in events_of(chunk):
        verdict = _judge(event)
        if verdict == _BROKEN:
            return b"".join(kept), True
        if verdict == _DROP:
            changed = True
        else:
            kept.append(event)
    return (b"".join(kept) if changed else chunk), False


def _judge(event: bytes) -> int:
    if event.endswith(OBJECT_CLOSES):
        if event.startswith(OBJECT_OPENS):
            return _KEEP
        at = event.find(b"\ndata:")
        if at != -1 and event.startswith(OBJECT_OPENS_LATER, at):
            return _KEEP
    payload = data_of(event)
    if payload is None or payload.startswith(DONE_PAYLOAD):
        return _KEEP
    if not payload:
        return _DROP
    is_object = payload.startswith(b"{") and payload.endswith(b"}")
    return _KEEP if is_object and payload[1:].lstrip()[:1] in (b'"', b"}") else _BROKEN


def says_nothing(chunk: dict[str, Any]) -> bool:
    """Does a translated stream's chunk (litellm's, dumped) carry nothing an upstream said: no
    role, content or tool call in any choice, no usage, no error?

    litellm makes such a chunk, with `finish_reason` "stop", when the upstream's 200 held no
    event it could read (an HTML page, JSON cut short, an event stream closed with no event):
    a stream of only these never began, so its attempt failed before the first byte.
    """
    if chunk.get("usage") or chunk.get("error"):
        return False
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict):
            return False
        if choice.get("text"):
            return False
        delta = choice.get("delta")
        if isinstance(delta, dict) and any(delta.get(name) for name in delta):
            return False
    return True
