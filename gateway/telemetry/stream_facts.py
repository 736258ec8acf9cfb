"""Stream step: what a stream says of itself, for its spans: the upstream's id of the
answer, the model that answered, the finish reasons (telemetry/attributes.py
`response_facts`, as for a whole answer). No text is kept.

It parses the stream's first event (the id and model: chat and completions chunks
carry them, a Responses stream's `response.created` event holds them in `response`),
and then only an event that can end a choice: a chunk whose `finish_reason` is a
string (most chunks spell it `null`), or a Responses `response.completed` /
`incomplete` / `failed` event. Every other chunk costs a few byte searches. First in
the chain: it sees the upstream's bytes (its ids, before any rewrite) and the finish
reasons even of a stream a guardrail cut.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.context import RequestContext
from gateway.sse import json_of
from gateway.stream.steps import NOTHING, Emit, events_of
from gateway.telemetry.attributes import FINISH_REASONS_KEPT, choice_endings, response_facts

# A finish_reason that is set (a string, in either spacing), or a Responses stream's end.
ENDING_MARKS = (
    b'"finish_reason":"',
    b'"finish_reason": "',
    b'"response.completed"',
    b'"response.incomplete"',
    b'"response.failed"',
)


class StreamFacts:
    """Feeds the request context's `response_id`, `response_model`, `finish_reasons`."""

    __slots__ = ("_ctx", "_ended", "_has_head")

    def __init__(self, ctx: RequestContext) -> None:
        self._ctx = ctx
        self._has_head = False
        self._ended: set[int] = set()  # the choices whose finish reason is kept

    def feed(self, chunk: bytes) -> Emit:
        if not self._has_head:
            self._read_head(chunk)
        for mark in ENDING_MARKS:
            if mark in chunk:
                self._read_endings(chunk)
                break
        return Emit(chunk)

    def finish(self) -> Emit:
        return NOTHING

    def _read_head(self, chunk: bytes) -> None:
        for event in events_of(chunk):
            parsed = _payload(json_of(event))
            if parsed is None:
                continue
            self._has_head = True
            facts = response_facts(parsed)
            ctx = self._ctx
            ctx.response_id = facts.response_id
            ctx.response_model = facts.model
            return

    def _read_endings(self, chunk: bytes) -> None:
        ctx = self._ctx
        for event in events_of(chunk):
            if not any(mark in event for mark in ENDING_MARKS):
                continue
            parsed = _payload(json_of(event))
            if parsed is None:
                continue
            facts = response_facts(parsed)
            # One reason per generation (GenAI semconv), so each choice counts once
            # however many chunks say it ended; a Responses stream has no choices.
            reasons = list(ctx.finish_reasons)
            endings = choice_endings(parsed) or enumerate(facts.finish_reasons)
            for index, reason in endings:
                if index not in self._ended and len(reasons) < FINISH_REASONS_KEPT:
                    self._ended.add(index)
                    reasons.append(reason)
            ctx.finish_reasons = tuple(reasons)
            if ctx.response_model is None:
                ctx.response_model = facts.model


def _payload(parsed: Any) -> Mapping[str, Any] | None:
    """A chunk's JSON object, or the response a Responses event carries."""
    if not isinstance(parsed, Mapping):
        return None
    response = parsed.get("response")
    if isinstance(response, Mapping) and isinstance(parsed.get("type"), str):
        return response
    return parsed
