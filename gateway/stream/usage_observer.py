"""Stream step: learn the stream's usage, and hide the usage chunk from clients
that did not ask for it.

The gateway always asks chat and completions upstreams for a usage chunk; the
client sees it only with `stream_options.include_usage`, as OpenAI behaves. When
the upstream reports nothing, `estimate()` counts what was seen (off the event
loop); a client that asked for usage then gets OpenAI's usage chunk made from that
count, before the `[DONE]` held back for it, and each other chunk carries OpenAI's
`"usage":null` (added by bytes where the upstream left the field out: vLLM does). A
report on a chunk with choices (vLLM's continuous usage stats) is nulled there and
sent on a chunk of its own before [DONE], as OpenAI sends it, unless one came.
Most chunks mention no usage, or only `"usage": null` (OpenAI's and vLLM's
spellings): byte checks handle those; the rest are parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.providers.base import Endpoint
from gateway.sse import DONE_PAYLOAD, EVENT_END, is_done, json_of
from gateway.stream.steps import NOTHING, Emit, events_of
from gateway.usage.usage import (
    Usage,
    answer_tier,
    estimate_usage,
    output_text,
    usage_from_report,
    wire_usage,
)

USAGE_KEY = b'"usage"'
USAGE_OBJECTS = (b'"usage":{', b'"usage": {')
# Stripped when the client did not ask: the key with its comma, in either order.
USAGE_NULLS = (b',"usage":null', b'"usage":null,', b', "usage": null', b'"usage": null, ')
USAGE_NULL_VALUES = (b'"usage":null', b'"usage": null')
DONE_EVENT = b"data: [DONE]\n\n"
# A stream chunk (it has choices) whose JSON object ends its event gets `"usage":null`
# spliced in before that object's last brace.
CHOICES_KEY = b'"choices"'
OBJECT_END = b"}\n\n"
NULL_USAGE_END = b',"usage":null}\n\n'
# What a made-up usage chunk copies from the stream's own chunks.
CHUNK_HEAD_FIELDS = ("id", "object", "created", "model", "system_fingerprint")


class UsageObserver:
    def __init__(
        self,
        endpoint: Endpoint,
        *,
        client_wants_usage: bool,
        body: Mapping[str, Any],
        model: str,
    ) -> None:
        """`body` and `model` (the request and the upstream model) are what `estimate`
        counts when the upstream reports no usage."""
        self._endpoint = endpoint
        is_chunked = endpoint in ("chat", "completions")
        self._strips = is_chunked and not client_wants_usage
        self._owes_usage = is_chunked and client_wants_usage
        self._body = body
        self._model = model
        self._holds_done = False
        # A usage report that came on a chunk with choices (vLLM's continuous usage stats,
        # usage on the last content chunk): OpenAI's clients get `"usage":null` there and
        # this report on a chunk of its own, before [DONE], as OpenAI sends it. None once
        # a chunk without choices carried one.
        self._late_report: dict[str, Any] | None = None
        self.reported: Usage | None = None
        self._estimated: Usage | None = None
        self._seen: list[bytes] = []  # what the client got, parsed only if no usage arrives

    def feed(self, chunk: bytes) -> Emit:
        out = self._pass(chunk)
        owed = self.reported is None or self._late_report is not None
        if self._owes_usage and owed and DONE_PAYLOAD in out.data:
            # Hold [DONE] back: the usage chunk this client asked for must come first.
            kept = b"".join(e for e in events_of(out.data) if not is_done(e))
            if len(kept) != len(out.data):
                self._holds_done = True
                return Emit(kept) if kept else NOTHING
        return out

    def _pass(self, chunk: bytes) -> Emit:
        if USAGE_KEY not in chunk:
            if self._owes_usage:  # OpenAI's `"usage": null`, where the upstream sent none
                chunk = with_null_usage(chunk)
            self._seen.append(chunk)
            return Emit(chunk)
        if not any(pattern in chunk for pattern in USAGE_OBJECTS):
            if self._strips:
                for pattern in USAGE_NULLS:
                    if pattern in chunk:
                        chunk = chunk.replace(pattern, b"")
                if USAGE_KEY not in chunk:
                    self._seen.append(chunk)
                    return Emit(chunk)
            elif chunk.count(USAGE_KEY) == sum(chunk.count(p) for p in USAGE_NULL_VALUES):
                self._seen.append(chunk)
                return Emit(chunk)
        out = b"".join(self._observe(event) for event in events_of(chunk))
        return Emit(out) if out else NOTHING

    def learn(self, chunk: bytes) -> None:
        """The usage the upstream reported in events the client never gets (after its
        error event): the upstream billed it. Rare, once a stream: parsed."""
        for event in events_of(chunk):
            parsed = json_of(event)
            if not isinstance(parsed, dict):
                continue
            found = usage_from_report(report_of(parsed), answer_tier(parsed))
            if found is not None:
                self.reported = found

    def finish(self) -> Emit:
        if not self._holds_done:
            return NOTHING
        if self._late_report is not None:  # usage came only beside choices
            payload = {**self._chunk_head(), "choices": [], "usage": self._late_report}
            return Emit(b"data: " + orjson.dumps(payload) + b"\n\n" + DONE_EVENT)
        if self.reported is not None:  # a usage chunk came after all
            return Emit(DONE_EVENT)
        return Emit(later=self._usage_chunk_and_done)

    def _usage_chunk_and_done(self) -> bytes:
        """OpenAI's final usage chunk (no choices, the stream's id/object/created/model),
        counted with the local tokenizer, then [DONE]. CPU-bound: run off the loop."""
        usage = self.estimate()
        head = self._chunk_head()
        payload = {**head, "choices": [], "usage": wire_usage("chat/completions", usage)}
        return b"data: " + orjson.dumps(payload) + b"\n\n" + DONE_EVENT

    def _chunk_head(self) -> dict[str, Any]:
        """The stream's own id/object/created/model: from its first chunk with an id that
        is not empty (Azure opens with a filter chunk saying `id: ""`, `created: 0`)."""
        blank: dict[str, Any] | None = None
        for chunk in self._seen:
            for event in events_of(chunk):
                parsed = json_of(event)
                if isinstance(parsed, dict) and "id" in parsed:
                    head = {k: parsed[k] for k in CHUNK_HEAD_FIELDS if k in parsed}
                    if parsed["id"]:
                        return head
                    blank = head if blank is None else blank
        return blank or {}

    def _observe(self, event: bytes) -> bytes:
        """One event that carries a usage report (or spells `usage` unusually)."""
        parsed = json_of(event)
        if not isinstance(parsed, dict):
            self._seen.append(event)
            return event
        if self._owes_usage and "usage" not in parsed:  # beside another event's usage
            event = with_null_usage(event)
            self._seen.append(event)
            return event
        report = report_of(parsed)
        found = usage_from_report(report, answer_tier(parsed))  # OpenAI's chunks say the tier
        if found is not None:
            self.reported = found
            if self._owes_usage and isinstance(report, dict) and "usage" in parsed:
                if not parsed.get("choices"):
                    self._late_report = None  # the usage chunk itself: relayed as it is
                else:  # OpenAI's `"usage":null` here; the report goes on its own chunk
                    self._late_report = report
                    parsed["usage"] = None
                    event = b"data: " + orjson.dumps(parsed) + b"\n\n"
        elif self._owes_usage and isinstance(report, dict) and not parsed.get("choices"):
            return b""  # an unusable usage chunk: the one counted here replaces it, at the end
        if self._strips and "usage" in parsed:
            if isinstance(report, dict) and not parsed.get("choices"):
                return b""  # the usage-only chunk the client did not ask for
            del parsed["usage"]
            event = b"data: " + orjson.dumps(parsed) + b"\n\n"
        if found is None or parsed.get("choices"):
            self._seen.append(event)
        return event

    def counted(self, usage: Usage) -> None:
        """The usage charged, counted from what the upstream sent before an output
        guardrail rewrote it (pipeline.py's tap): the usage chunk the client gets says
        that, not the count of the redacted text it saw."""
        self._estimated = usage

    def estimate(self) -> Usage:
        """Count what was seen with the local tokenizer (CPU-bound: run it off the loop).
        Counted once: a later call returns it."""
        if self._estimated is None:
            self._estimated = self._count()
        return self._estimated

    def _count(self) -> Usage:
        generated = []
        for chunk in self._seen:
            for event in events_of(chunk):
                parsed = json_of(event)
                if isinstance(parsed, dict):
                    generated.append(output_text(self._endpoint, parsed))
        return estimate_usage(self._endpoint, self._body, self._model, "".join(generated))


def report_of(parsed: dict[str, Any]) -> Any:
    """An event's usage report: chat's `usage`, or a Responses event's `response.usage`."""
    report = parsed.get("usage")
    if report is None and isinstance(parsed.get("response"), dict):
        report = parsed["response"].get("usage")  # Responses: response.completed
    return report


def with_null_usage(chunk: bytes) -> bytes:
    """`chunk` with OpenAI's `"usage":null` in each stream chunk that lacks the field, by
    bytes (no parse, no re-encode: a copy of the chunk). Only events with `"choices"`
    whose JSON object ends the event are changed; others (`[DONE]`, comments, an error
    event, an object followed by spaces) pass as they are."""
    if chunk.find(EVENT_END) == len(chunk) - 2:  # one event: the usual read
        return _with_null_usage(chunk)
    return b"".join(_with_null_usage(event) for event in events_of(chunk))


def _with_null_usage(event: bytes) -> bytes:
    if event.endswith(OBJECT_END) and CHOICES_KEY in event:
        return event[:-3] + NULL_USAGE_END
    return event
