"""JSON-lines logging: one object per line, with structured fields, no prompt text.

Records may carry `extra={"fields": {...}}`; those keys are merged into the line.
The per-request access line bypasses `logging` (see AccessLog): it is the one
line every request writes, so it is built and written as cheaply as possible.
No line carries a secret: not a token, a client secret, a key, nor a request body.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from typing import BinaryIO

import orjson

from gateway.context import EdgeContext, RequestContext
from gateway.errors import cut
from gateway.guardrails.kinds import GuardAction, Where
from gateway.guardrails.stage import request_texts
from gateway.telemetry.current import current_trace_id
from gateway.usage.pricing import usd_text

log = logging.getLogger("gateway.logs")

# GATEWAY_LOG_LEVEL applies to these. Every other logger (aiosqlite, sqlalchemy,
# authlib, httpx, litellm, ...) stays at WARNING whatever it says: at DEBUG
# aiosqlite prints SQL parameters (the private signing key among them) and authlib
# the tokens it issues; at INFO httpx prints request URLs, some of which carry keys.
OWN_LOGGERS = ("gateway", "uvicorn")
# A team that logs content (policy `log_content`): each text field is cut at this many
# characters, so one request cannot write a multi-megabyte line.
CONTENT_MAX_CHARS = 32 * 1024
THIRD_PARTY_LEVEL = logging.WARNING
# OpenTelemetry's span module warns of each malformed `tracestate` with the whole header
# (up to the header line limit, ~20 KB), for any caller, before any token is checked:
# such a header is dropped as W3C Trace Context allows, and not told of.
QUIET_LOGGERS = ("opentelemetry.trace.span",)
# What a line may hold that JSON leaves raw but a log's reader takes for a line end or a
# terminal command: U+2028, U+2029 (Python's splitlines, JavaScript) and the C1 controls
# (U+0085 NEL among them), as UTF-8. orjson escapes only the C0 controls.
_RAW_BREAKS = re.compile(rb"\xe2\x80[\xa8\xa9]|\xc2[\x80-\x9f]")


def json_line(fields: object) -> bytes:
    """One JSON log line's bytes (no newline): every character a reader could take for a
    line end or a control written as a `\\uXXXX` escape, so no field a caller chose (a
    model name, a path, a subject) breaks or forges a line."""
    line = orjson.dumps(fields, default=str)
    if line.isascii():  # the usual line: one C-level pass
        return line
    return _RAW_BREAKS.sub(_escaped, line)


def _escaped(match: re.Match[bytes]) -> bytes:
    return b"\\u%04x" % ord(match[0].decode())


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
        trace_id = current_trace_id()  # a line logged while a traced request runs
        if trace_id is not None:
            line["trace_id"] = trace_id
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json_line(line).decode()


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    logging.getLogger("gateway").handlers[:] = []  # the command line's (configure_cli_logging)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level.upper())  # ValueError for an unknown level
    # Stricter than WARNING (error, critical) applies to everyone; laxer only to ours.
    root.setLevel(max(logging.getLogger("gateway").level, THIRD_PARTY_LEVEL))
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Our access line says more. With no handler to reach, uvicorn's connections do not
    # even build theirs (`access_log` is hasHandlers(): ~2 µs a response otherwise).
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers[:] = []
    uvicorn_access.propagate = False
    uvicorn_access.disabled = True


def request_fields(ctx: RequestContext) -> dict[str, object]:
    """The per-request line: who, what, where it went, what it cost. No content, unless
    the team's policy sets `log_content`."""
    principal = ctx.principal
    fields: dict[str, object] = {
        "ts": round(time.time(), 3),
        "level": "info",
        "logger": "gateway.access",
        "msg": "request",
        "request_id": ctx.request_id,
        "client": ctx.peer,
        "endpoint": ctx.endpoint,
        "team": (principal.team or None) if principal else None,
        "subject": principal.subject if principal else None,
        "client_id": principal.client_id if principal else None,
        "model": cut(ctx.model) if ctx.model else ctx.model,  # the caller's text: bounded
        "stream": ctx.is_stream,
        "deployment": ctx.deployment.label if ctx.deployment else None,
        "attempts": ctx.attempts,
        "status": ctx.status,
        "outcome": ctx.outcome,
        "error_code": ctx.error_code,
        "error_detail": ctx.error_detail,
        "latency_ms": round(ctx.elapsed_s() * 1000, 2),
        "ttfb_ms": round(ctx.first_byte_s * 1000, 2) if ctx.first_byte_s is not None else None,
        "trace_id": current_trace_id(),  # None unless GATEWAY_OTLP_ENDPOINT is set
    }
    if ctx.cache is not None:  # response cache: hit (no upstream call), miss or bypass
        fields["cache"] = ctx.cache.value
    if ctx.guardrail_hits:  # rule names and what they did, never the text
        fields["guardrails"] = [f"{h.rule}:{h.action}:{h.where}" for h in ctx.guardrail_hits]
    usage = ctx.recorded_usage  # a hit's too: its ledger row holds them
    if usage is not None:
        fields["input_tokens"] = usage.input_tokens
        fields["output_tokens"] = usage.output_tokens
        fields["cached_tokens"] = usage.cached_tokens
        fields["usage_estimated"] = usage.is_estimated
        fields["cost_usd"] = usd_text(ctx.cost_nanousd)
    if ctx.logs_content:  # the team's policy asked (log_content); never otherwise
        content_fields(ctx, fields)
    return fields


def content_fields(ctx: RequestContext, fields: dict[str, object]) -> None:
    """The prompt as sent upstream (input guardrails applied) and the answer as the client
    got it (output guardrails applied), each cut at CONTENT_MAX_CHARS (`*_truncated`).
    A prompt refused before it went upstream, or an answer blocked, is not there."""
    if ctx.request_body is not None:
        prompt = "\n".join(request_texts(ctx.endpoint, ctx.request_body))
        fields["prompt"] = prompt[:CONTENT_MAX_CHARS]
        fields["prompt_truncated"] = len(prompt) > CONTENT_MAX_CHARS
    if ctx.answer_texts is not None and not _answer_blocked(ctx):
        completion = "".join(ctx.answer_texts)
        fields["completion"] = completion[:CONTENT_MAX_CHARS]
        fields["completion_truncated"] = len(completion) > CONTENT_MAX_CHARS


def _answer_blocked(ctx: RequestContext) -> bool:
    """An output rule blocked the answer: a stream's text before the cut is not logged
    either (the client got it, but it is the blocked answer's start)."""
    return any(
        hit.action is GuardAction.BLOCK and hit.where is Where.OUTPUT for hit in ctx.guardrail_hits
    )


def edge_fields(ctx: EdgeContext) -> dict[str, object]:
    """The line of a request outside the inference path: who, which path, how it ended."""
    principal = ctx.principal
    return {
        "ts": round(time.time(), 3),
        "level": "info",
        "logger": "gateway.access",
        "msg": "request",
        "request_id": ctx.request_id,
        "client": ctx.peer,
        "method": ctx.method,
        "path": ctx.path,
        "team": (principal.team or None) if principal else None,
        "subject": principal.subject if principal else None,
        "client_id": principal.client_id if principal else ctx.client_id,
        "status": ctx.status,
        "outcome": ctx.outcome,
        "error_code": ctx.error_code,
        "error_detail": ctx.error_detail,
        "latency_ms": round(ctx.elapsed_s() * 1000, 2),
    }


class AccessLog:
    """One JSON line per request, written in batches off the request path.

    Lines are buffered and written at most every `interval_s` (and on close),
    so a request costs an `orjson.dumps`, not a LogRecord and a write syscall.
    `target` is "stderr", "off", or a file path (appended to; `reopen` after the
    file was rotated away). A line recorded after `close` is written at once,
    not dropped: a request cut at the shutdown deadline may end after the lifespan.
    """

    def __init__(self, target: str = "stderr", interval_s: float = 0.25) -> None:
        self._target = target
        self._interval_s = interval_s
        self._lines: list[bytes] = []
        self._is_scheduled = False
        self._is_closed = False
        self._stream = _open(target)

    @property
    def is_file(self) -> bool:
        return self._target not in ("stderr", "off")

    def record(self, ctx: RequestContext) -> None:
        if self._stream is not None:
            self._add(json_line(request_fields(ctx)) + b"\n")

    def record_edge(self, ctx: EdgeContext) -> None:
        if self._stream is not None:
            self._add(json_line(edge_fields(ctx)) + b"\n")

    def _add(self, line: bytes) -> None:
        if self._is_closed:
            self._write_late(line)
            return
        self._lines.append(line)
        if not self._is_scheduled:
            self._is_scheduled = True
            asyncio.get_running_loop().call_later(self._interval_s, self.flush)

    def flush(self) -> None:
        self._is_scheduled = False
        if not self._lines or self._stream is None or self._is_closed:
            return
        lines, self._lines = self._lines, []
        sys.stderr.flush()  # keep whole lines when sharing stderr with the logger
        self._stream.write(b"".join(lines))
        self._stream.flush()

    def reopen(self) -> None:
        """Flush to the old file, then append to a new one at the path (after logrotate).

        When the path cannot be opened the old file is kept and the reason logged.
        """
        if not self.is_file or self._is_closed:
            return
        self.flush()
        try:
            stream = _open(self._target)
        except OSError as error:
            log.error(
                "cannot reopen the access log; still writing to the old file",
                extra={"fields": {"path": self._target, "error": str(error)}},
            )
            return
        old, self._stream = self._stream, stream
        if old is not None:
            old.close()

    def close(self) -> None:
        self.flush()
        self._is_closed = True
        if self.is_file and self._stream is not None:
            self._stream.close()

    def _write_late(self, line: bytes) -> None:
        try:
            if self.is_file:
                with open(self._target, "ab") as file:
                    file.write(line)
            elif self._stream is not None:
                sys.stderr.flush()
                self._stream.write(line)
                self._stream.flush()
        except (OSError, ValueError) as error:  # ValueError: stderr already closed
            log.error("an access line was lost", extra={"fields": {"error": str(error)}})


def _open(target: str) -> BinaryIO | None:
    if target == "off":
        return None
    if target == "stderr":
        return sys.stderr.buffer
    return open(target, "ab")  # closed by AccessLog.close() or reopen()


class CliFormatter(logging.Formatter):
    """A command's log line as its other messages are: `warning: ...` or `error: ...`."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = "error" if record.levelno >= logging.ERROR else "warning"
        return f"{prefix}: {record.getMessage()}"


def configure_cli_logging() -> None:
    """What a command (not `serve`, which configures JSON lines) logs reaches stderr as
    `warning: ` and `error: ` lines, as README promises; informational lines stay out."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(CliFormatter())
    handler.setLevel(logging.WARNING)
    logging.getLogger("gateway").handlers[:] = [handler]  # ours: third parties' as before
