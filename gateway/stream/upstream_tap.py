"""Stream step, first of a guarded stream's chain: a copy of what the upstream sent.

The output guardrail (guardrails/stream_scanner.py) holds text back, redacts it, and
may cut the stream; the usage observer after it sees only what the client got. The
upstream bills what it generated, so when it reports no usage (a cut stream never
reaches its usage chunk) the gateway counts that from this copy. Passes every chunk
on unchanged; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.providers.base import Endpoint
from gateway.stream.steps import NOTHING, Emit
from gateway.stream.usage_observer import UsageObserver
from gateway.usage.usage import Usage


class UpstreamTap:
    __slots__ = ("_chunks",)

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def feed(self, chunk: bytes) -> Emit:
        self._chunks.append(chunk)
        return Emit(chunk)

    def finish(self) -> Emit:
        return NOTHING

    def usage(self, endpoint: Endpoint, body: Mapping[str, Any], model: str) -> Usage:
        """The usage the upstream reported in what it sent, else a count of everything
        it generated. CPU-bound on a long stream: call on a thread."""
        observer = UsageObserver(endpoint, client_wants_usage=False, body=body, model=model)
        for chunk in self._chunks:
            observer.feed(chunk)
        return observer.reported or observer.estimate()
