"""Stream step: learn the stream's usage, and hide the usage chunk from clients
that did not ask for it.

The gateway always asks chat and completions upstreams for a usage chunk; the
client sees it only with `stream_options.include_usage`, as OpenAI behaves. When
the upstream reports nothing, `estimate_input()` hands back what was seen, to be
counted off the event loop. Most chunks mention no usage, or only `"usage": null`
(OpenAI's and vLLM's spellings): byte checks handle those; the rest are parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.providers.base import Endpoint
from gateway.sse import json_of
from gateway.stream.steps import NOTHING, Emit, events_of
from gateway.usage.usage import Usage, estimate_usage, output_text, usage_from_report

USAGE_KEY = b'"usage"'
USAGE_OBJECTS = (b'"usage":{', b'"usage": {')
# Stripped when the client did not ask: the key with its comma, in either order.
USAGE_NULLS = (b',"usage":null', b'"usage":null,', b', "usage": null', b'"usage": null, ')
USAGE_NULL_VALUES = (b'"usage":null', b'"usage": null')


class UsageObserver:
    def __init__(self, endpoint: Endpoint, *, client_wants_usage: bool) -> None:
        self._endpoint = endpoint
        self._strips = endpoint in ("chat", "completions") and not client_wants_usage
        self.reported: Usage | None = None
        self._seen: list[bytes] = []  # what the client got, parsed only if no usage arrives

    def feed(self, chunk: bytes) -> Emit:
        if USAGE_KEY not in chunk:
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

    def finish(self) -> Emit:
        return NOTHING

    def _observe(self, event: bytes) -> bytes:
        """One event that carries a usage report (or spells `usage` unusually)."""
        parsed = json_of(event)
        if not isinstance(parsed, dict):
            self._seen.append(event)
            return event
        report = parsed.get("usage")
        if report is None and isinstance(parsed.get("response"), dict):
            report = parsed["response"].get("usage")  # Responses: response.completed
        found = usage_from_report(report)
        if found is not None:
            self.reported = found
        if self._strips and "usage" in parsed:
            if isinstance(report, dict) and not parsed.get("choices"):
                return b""  # the usage-only chunk the client did not ask for
            del parsed["usage"]
            event = b"data: " + orjson.dumps(parsed) + b"\n\n"
        if found is None or parsed.get("choices"):
            self._seen.append(event)
        return event

    def estimate(self, body: Mapping[str, Any], model: str) -> Usage:
        """Count what was seen with the local tokenizer (CPU-bound: run it off the loop)."""
        generated = []
        for chunk in self._seen:
            for event in events_of(chunk):
                parsed = json_of(event)
                if isinstance(parsed, dict):
                    generated.append(output_text(self._endpoint, parsed))
        return estimate_usage(self._endpoint, body, model, "".join(generated))
