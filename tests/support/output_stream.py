"""Drive guardrails' OutputScanner over a stream's events, as the relay does."""

from __future__ import annotations

from gateway.guardrails.scanner import Scanner
from gateway.guardrails.stream_scanner import OutputScanner

DONE = b"data: [DONE]\n\n"


def scan_stream(
    scanner: Scanner, events: list[bytes], endpoint: str = "chat"
) -> tuple[bytes, bool]:
    """What the client gets of `events` (each an SSE event, offloaded work run in line),
    and whether the stream ended with a rule's (or an upstream's) error."""
    step = OutputScanner(scanner, endpoint, [])
    out = b""
    for event in events:
        emit = step.feed(event)
        while emit.offload is not None:
            emit = emit.offload()
        out += emit.data
        if emit.end is not None:
            return out, True
    emit = step.finish()
    return out + emit.data, emit.end is not None
