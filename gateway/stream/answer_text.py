"""Stream step: the text the client got, for a team whose policy logs content.

Placed after the output guardrail scanner, so it sees what a redact rule left, never
what it rewrote. It parses each event (only for such teams: opt-in, for debugging)
and keeps the answer's text up to `limit` characters (the access line's cut), then
only notes that it was cut.
"""

from __future__ import annotations

from gateway.context import RequestContext
from gateway.logs import CONTENT_MAX_CHARS
from gateway.sse import json_of
from gateway.stream.steps import NOTHING, Emit, events_of
from gateway.usage.usage import output_text


class AnswerText:
    __slots__ = ("_ctx", "_kept", "_limit", "_size")

    def __init__(self, ctx: RequestContext, limit: int = CONTENT_MAX_CHARS) -> None:
        self._ctx = ctx
        self._limit = limit
        self._kept = ctx.answer_texts = []  # joined once, by the access log
        self._size = 0

    def feed(self, chunk: bytes) -> Emit:
        if self._size <= self._limit:  # one character past it tells the log it was cut
            for event in events_of(chunk):
                parsed = json_of(event)
                if isinstance(parsed, dict):
                    text = output_text(self._ctx.endpoint, parsed)
                    if text:
                        self._kept.append(text)
                        self._size += len(text)
        return Emit(chunk)

    def finish(self) -> Emit:
        return NOTHING
