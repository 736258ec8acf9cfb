"""JSON-lines logging: one object per line, with structured fields, no prompt text.

Records may carry `extra={"fields": {...}}`; those keys are merged into the line.
"""

from __future__ import annotations

import logging
import sys
import time

import orjson

from gateway.context import RequestContext

access_log = logging.getLogger("gateway.access")


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


def log_request(ctx: RequestContext) -> None:
    """The per-request line: who, what, where it went, what it cost. No content."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    principal = ctx.principal
    usage = ctx.usage
    fields: dict[str, object] = {
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
    if usage is not None:
        fields["input_tokens"] = usage.input_tokens
        fields["output_tokens"] = usage.output_tokens
        fields["cached_tokens"] = usage.cached_tokens
        fields["usage_estimated"] = usage.is_estimated
    access_log.info("request", extra={"fields": fields, "ts_wall": time.time()})
