"""JSON-lines logging: one object per line, with structured fields, no prompt text.

Records may carry `extra={"fields": {...}}`; those keys are merged into the line.
The per-request access line bypasses `logging` (see AccessLog): it is the one
line every request writes, so it is built and written as cheaply as possible.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import BinaryIO

import orjson

from gateway.context import RequestContext


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # our access line says more


def request_fields(ctx: RequestContext) -> dict[str, object]:
    """The per-request line: who, what, where it went, what it cost. No content."""
    principal = ctx.principal
    fields: dict[str, object] = {
        "ts": round(time.time(), 3),
        "level": "info",
        "logger": "gateway.access",
        "msg": "request",
        "request_id": ctx.request_id,
        "endpoint": ctx.endpoint,
        "team": principal.team if principal else None,
        "subject": principal.subject if principal else None,
        "client_id": principal.client_id if principal else None,
        "model": ctx.model,
        "stream": ctx.is_stream,
        "deployment": ctx.deployment.label if ctx.deployment else None,
        "attempts": ctx.attempts,
        "status": ctx.status,
        "outcome": ctx.outcome,
        "error_code": ctx.error_code,
        "latency_ms": round(ctx.elapsed_s() * 1000, 2),
        "ttfb_ms": round(ctx.first_byte_s * 1000, 2) if ctx.first_byte_s is not None else None,
    }
    usage = ctx.usage
    if usage is not None:
        fields["input_tokens"] = usage.input_tokens
        fields["output_tokens"] = usage.output_tokens
        fields["cached_tokens"] = usage.cached_tokens
        fields["usage_estimated"] = usage.is_estimated
    return fields


class AccessLog:
    """One JSON line per request, written in batches off the request path.

    Lines are buffered and written at most every `interval_s` (and on close),
    so a request costs an `orjson.dumps`, not a LogRecord and a write syscall.
    `target` is "stderr", "off", or a file path (appended to).
    """

    def __init__(self, target: str = "stderr", interval_s: float = 0.25) -> None:
        self._interval_s = interval_s
        self._lines: list[bytes] = []
        self._is_scheduled = False
        self._owns_stream = target not in ("stderr", "off")
        self._stream: BinaryIO | None
        if target == "off":
            self._stream = None
        elif target == "stderr":
            self._stream = sys.stderr.buffer
        else:
            self._stream = open(target, "ab")  # noqa: SIM115  # closed in close()

    def record(self, ctx: RequestContext) -> None:
        if self._stream is None:
            return
        self._lines.append(orjson.dumps(request_fields(ctx), default=str) + b"\n")
        if not self._is_scheduled:
            self._is_scheduled = True
            asyncio.get_running_loop().call_later(self._interval_s, self.flush)

    def flush(self) -> None:
        self._is_scheduled = False
        if not self._lines or self._stream is None:
            return
        lines, self._lines = self._lines, []
        sys.stderr.flush()  # keep whole lines when sharing stderr with the logger
        self._stream.write(b"".join(lines))
        self._stream.flush()

    def close(self) -> None:
        self.flush()
        if self._owns_stream and self._stream is not None:
            self._stream.close()
