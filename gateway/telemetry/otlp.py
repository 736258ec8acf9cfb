"""OTLP/HTTP trace export: finished spans → protobuf bytes → POST to the collector.

The official exporter builds a protobuf object per span, attribute and value (about
55-90 µs of CPU per span here, more than creating the span); this writes the same
wire bytes directly, several times cheaper, and needs no protobuf runtime. Field
numbers are those of opentelemetry-proto's `trace/v1/trace.proto`,
`common/v1/common.proto` and `collector/trace/v1/trace_service.proto`; the tests
decode our bytes with opentelemetry-proto and compare them with the official
encoder's. The POST runs in the batch processor's thread, never on the event loop.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import logging
import socket
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind
from opentelemetry.trace.span import TraceState

from gateway.telemetry import names
from gateway.telemetry.endpoint import Headers, request_headers, shown_url, without_userinfo

log = logging.getLogger("gateway.telemetry")

CONTENT_TYPE = "application/x-protobuf"
EXPORT_TIMEOUT_S = 10.0
_LEN, _VARINT, _I64, _I32 = 2, 0, 1, 5
# Span.flags: the W3C flags' low byte, plus "we know whether the parent is remote".
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_U64 = 0xFFFFFFFFFFFFFFFF
_pack_double = struct.Struct("<d").pack
_pack_u64 = struct.Struct("<Q").pack
_pack_u32 = struct.Struct("<I").pack


_SMALL = tuple(bytes((i,)) for i in range(128))  # one-byte varints, prebuilt


def _varint(value: int) -> bytes:
    if value < 128:
        return _SMALL[value]
    if value < 16384:  # a span's or an attribute's size: two bytes, without the loop
        return bytes((value & 0x7F | 0x80, value >> 7))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@functools.cache
def _tag(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _field(field: int, payload: bytes) -> bytes:
    """A length-delimited field: a string, bytes or an embedded message."""
    size = len(payload)
    return _tag(field, _LEN) + (_SMALL[size] if size < 128 else _varint(size)) + payload


def _text(field: int, text: str) -> bytes:
    return _field(field, text.encode()) if text else b""


def _number(field: int, value: int) -> bytes:
    return _tag(field, _VARINT) + _varint(value & _U64) if value else b""


# AnyValue's field tags, and KeyValue's: key = 1, value = 2 (common.v1).
_STRING, _BOOL, _INT, _DOUBLE = _tag(1, _LEN), _tag(2, _VARINT), _tag(3, _VARINT), _tag(4, _I64)
_TRUE, _FALSE = _BOOL + b"\x01", _BOOL + b"\x00"
_VALUE_TAG = _tag(2, _LEN)


def _array(values: Sequence[Any]) -> bytes:
    return _field(5, b"".join(_field(1, any_value(item)) for item in values))


def any_value(value: Any) -> bytes:
    """common.v1.AnyValue, as the official encoder maps Python values."""
    kind = type(value)
    if kind is str:
        data: bytes = value.encode()
        size = len(data)
        return _STRING + (_SMALL[size] if size < 128 else _varint(size)) + data
    if kind is bool:
        return _TRUE if value else _FALSE
    if kind is int:
        return _INT + _varint(value & _U64)
    if kind is float:
        return _DOUBLE + _pack_double(value)
    if kind is tuple:  # finish reasons, guardrail actions
        return _array(value)
    if value is None:
        return b""
    if isinstance(value, bool):
        return _TRUE if value else _FALSE
    if isinstance(value, str):
        return _field(1, value.encode())
    if isinstance(value, int):
        return _INT + _varint(value & _U64)
    if isinstance(value, float):
        return _DOUBLE + _pack_double(value)
    if isinstance(value, bytes):
        return _field(7, value)
    if isinstance(value, Sequence):
        return _array(value)
    if isinstance(value, Mapping):
        return _field(6, b"".join(_field(1, key_value(str(k), v)) for k, v in value.items()))
    raise TypeError(f"cannot encode a {type(value).__name__} attribute")


# Encoded pieces that repeat in every batch, kept across batches. Attribute keys are
# the policy's and ours (a few dozen); most values repeat too (a team, model, status,
# token count, finish reasons), a request id never does. Entries are found by field,
# then key, then value (no tuple to build per attribute); a key's values are
# forgotten when they fill up. Booleans have their own map: True == 1.
_MAX_KEYS = 1024
_MAX_VALUES_PER_KEY = 2048
_key_heads: dict[str, bytes] = {}
_entries: dict[int, dict[str, dict[Any, bytes]]] = {}
_bool_entries: dict[tuple[int, str, bool], bytes] = {}


def key_value(key: str, value: Any) -> bytes:
    """common.v1.KeyValue."""
    head = _key_heads.get(key)
    if head is None:
        if len(_key_heads) >= _MAX_KEYS:
            _key_heads.clear()
        head = _key_heads[key] = _text(1, key) + _VALUE_TAG
    encoded = any_value(value)
    size = len(encoded)
    return head + (_SMALL[size] if size < 128 else _varint(size)) + encoded


def _entry(field: int, key: str, value: Any) -> bytes:
    """One attribute as a length-delimited field `field` of its message."""
    pair = key_value(key, value)
    size = len(pair)
    return _tag(field, _LEN) + (_SMALL[size] if size < 128 else _varint(size)) + pair


# Attributes whose values never repeat: caching them would only push out the rest.
_NEVER_REPEATS = frozenset({names.GATEWAY_REQUEST_ID, names.GEN_AI_RESPONSE_ID})


def _all_text(values: tuple[Any, ...]) -> bool:
    """A tuple of strings only: as a key it cannot meet an equal one of other types
    ((1,) == (True,)), so its encoding may be remembered."""
    for value in values:  # noqa: SIM110  # a loop: no generator per call
        if type(value) is not str:
            return False
    return True


def attributes(field: int, found: Mapping[str, Any] | None) -> bytes:
    if not found:
        return b""
    out = []
    by_key = _entries.get(field)
    if by_key is None:
        by_key = _entries[field] = {}
    for key, value in found.items():
        kind = type(value)
        if (
            kind is str or kind is int or (kind is tuple and _all_text(value))
        ) and key not in _NEVER_REPEATS:
            values = by_key.get(key)
            if values is None:
                if len(by_key) >= _MAX_KEYS:
                    by_key.clear()
                values = by_key[key] = {}
            cached = values.get(value)
            if cached is None:
                if len(values) >= _MAX_VALUES_PER_KEY:
                    values.clear()
                cached = values[value] = _entry(field, key, value)
            out.append(cached)
        elif kind is bool:
            cached = _bool_entries.get((field, key, value))
            if cached is None:
                if len(_bool_entries) >= _MAX_KEYS:
                    _bool_entries.clear()
                cached = _bool_entries[field, key, value] = _entry(field, key, value)
            out.append(cached)
        else:
            out.append(_entry(field, key, value))
    return b"".join(out)


def _span_flags(parent: SpanContext | None) -> int:
    return _HAS_IS_REMOTE | (_IS_REMOTE if parent is not None and parent.is_remote else 0)


def _fixed32(field: int, value: int) -> bytes:
    return _tag(field, _I32) + _pack_u32(value) if value else b""


def _fixed64(tag: bytes, value: int | None) -> bytes:
    """A fixed64 field (`tag`: made once, see _START below)."""
    return tag + _pack_u64(value) if value else b""


# Span fields that are the same bytes in every span, or one of a few.
_SPAN_ATTRIBUTES = 9  # Span.attributes' field number
_TRACE_ID = _tag(1, _LEN) + b"\x10"  # 16 bytes follow
_SPAN_ID = _tag(2, _LEN) + b"\x08"
_PARENT_SPAN_ID = _tag(4, _LEN) + b"\x08"
_FLAGS_LOCAL = _fixed32(16, _HAS_IS_REMOTE)
_FLAGS_REMOTE = _fixed32(16, _HAS_IS_REMOTE | _IS_REMOTE)
# Span.start_time_unix_nano, end_time_unix_nano; Span.Event.time_unix_nano.
_START, _END, _EVENT_TIME = _tag(7, _I64), _tag(8, _I64), _tag(1, _I64)


@functools.cache
def _kind(value: int) -> bytes:
    return _number(6, value + 1)  # the SDK counts from INTERNAL=0, OTLP from UNSPECIFIED


@functools.cache
def _status(description: str, code: int) -> bytes:
    return _field(15, _text(2, description) + _number(3, code))


def encode_span(span: ReadableSpan) -> bytes:
    """trace.v1.Span."""
    context = span.get_span_context()
    assert context is not None  # a finished SDK span always has one
    parent = span.parent
    status = span.status
    state = context.trace_state
    parts = [
        _TRACE_ID,
        context.trace_id.to_bytes(16, "big"),
        _SPAN_ID,
        context.span_id.to_bytes(8, "big"),
        _text(3, state.to_header()),  # b"" for an empty state
        _PARENT_SPAN_ID + parent.span_id.to_bytes(8, "big") if parent is not None else b"",
        _text(5, span.name),
        _kind(span.kind.value),
        _fixed64(_START, span.start_time),
        _fixed64(_END, span.end_time),
        attributes(_SPAN_ATTRIBUTES, span.attributes),
        _number(10, span.dropped_attributes),
    ]
    for event in span.events:
        parts.append(
            _field(
                11,
                _fixed64(_EVENT_TIME, event.timestamp)
                + _text(2, event.name)
                + attributes(3, event.attributes)
                + _number(4, event.dropped_attributes),
            )
        )
    parts.append(_number(12, span.dropped_events))
    for link in span.links:
        parts.append(
            _field(
                13,
                _field(1, link.context.trace_id.to_bytes(16, "big"))
                + _field(2, link.context.span_id.to_bytes(8, "big"))
                + attributes(4, link.attributes)
                + _number(5, link.dropped_attributes)
                + _fixed32(6, _span_flags(link.context)),
            )
        )
    parts.append(_number(14, span.dropped_links))
    parts.append(_status(status.description or "", status.status_code.value))
    parts.append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
    return b"".join(parts)


class Block:
    """Attributes that go on spans together and repeat (an attempt's deployment, the
    answer on its two spans, a team's request head): encoded once, whatever number of
    spans and batches carry it. Never changed once built."""

    __slots__ = ("_encoded", "attributes")

    def __init__(self, attributes: Mapping[str, Any]) -> None:
        self.attributes = attributes
        self._encoded: bytes | None = None

    def encoded(self) -> bytes:
        found = self._encoded
        if found is None:
            found = self._encoded = attributes(_SPAN_ATTRIBUTES, self.attributes)
        return found


# A span's attributes in parts, in order: blocks, and maps that do not repeat.
AttributeParts = tuple[Block | Mapping[str, Any], ...]


def merged(parts: AttributeParts) -> dict[str, Any]:
    """The parts as one map (what an SDK span carries)."""
    found: dict[str, Any] = {}
    for part in parts:
        found.update(part.attributes if isinstance(part, Block) else part)
    return found


def _encoded_parts(parts: AttributeParts) -> bytes:
    out = []
    for part in parts:
        if type(part) is Block:
            out.append(part.encoded())
        else:
            out.append(attributes(_SPAN_ATTRIBUTES, part))  # type: ignore[arg-type]
    return b"".join(out)


class SpanFacts(NamedTuple):
    """One finished span as plain values: what telemetry/tracing.py builds a trace's
    spans from, both as the SDK's `ReadableSpan`s and straight into `Span` messages.
    Its attributes are `merged(parts)`; no key is in two parts."""

    name: str
    span_id: int
    parent_id: int  # 0: none
    parent_is_remote: bool
    kind: SpanKind
    start_ns: int
    end_ns: int
    parts: AttributeParts
    is_error: bool


_STATUS_UNSET, _STATUS_ERROR = _status("", 0), _status("", 2)  # StatusCode UNSET, ERROR
_SERVER, _CLIENT = SpanKind.SERVER, SpanKind.CLIENT
_SERVER_KIND, _CLIENT_KIND = _kind(_SERVER.value), _kind(_CLIENT.value)
_names: dict[str, bytes] = {}  # span names repeat ("chat <model>"): encoded once


def _name(name: str) -> bytes:
    found = _names.get(name)
    if found is None:
        if len(_names) >= _MAX_KEYS:
            _names.clear()
        found = _names[name] = _text(5, name)
    return found


def encode_facts(trace_id: int, state: TraceState, spans: Iterable[SpanFacts]) -> list[bytes]:
    """The `Span` messages of one trace's spans: byte for byte what `encode_span` makes
    of the same spans as `ReadableSpan`s, without building those."""
    trace_part = _TRACE_ID + trace_id.to_bytes(16, "big") + _SPAN_ID
    state_part = _text(3, state.to_header()) if state else b""  # the usual trace has none
    return [
        b"".join(
            (
                trace_part,
                span.span_id.to_bytes(8, "big"),
                state_part,
                _PARENT_SPAN_ID + span.parent_id.to_bytes(8, "big") if span.parent_id else b"",
                _name(span.name),
                _SERVER_KIND
                if span.kind is _SERVER
                else _CLIENT_KIND
                if span.kind is _CLIENT
                else _kind(span.kind.value),
                _fixed64(_START, span.start_ns),
                _fixed64(_END, span.end_ns),
                _encoded_parts(span.parts),
                _STATUS_ERROR if span.is_error else _STATUS_UNSET,
                _FLAGS_REMOTE if span.parent_is_remote else _FLAGS_LOCAL,
            )
        )
        for span in spans
    ]


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return b""
    return _text(1, scope.name) + _text(2, scope.version or "") + attributes(3, scope.attributes)


_Groups = dict[int, tuple[Resource, dict[int, tuple[InstrumentationScope | None, list[bytes]]]]]


def _group(groups: _Groups, resource: Resource, scope: InstrumentationScope | None) -> list[bytes]:
    scopes = groups.setdefault(id(resource), (resource, {}))[1]
    return scopes.setdefault(id(scope), (scope, []))[1]


def encode_request(spans: Iterable[ReadableSpan]) -> bytes:
    """collector.trace.v1.ExportTraceServiceRequest, spans grouped by resource and scope."""
    groups: _Groups = {}
    for span in spans:
        _group(groups, span.resource, span.instrumentation_scope).append(encode_span(span))
    return _request(groups)


class EncodedTrace(Protocol):
    """A finished trace that encodes its own spans (telemetry/tracing.py RequestTrace)."""

    @property
    def resource(self) -> Resource: ...

    @property
    def scope(self) -> InstrumentationScope | None: ...

    def encoded_spans(self) -> list[bytes]: ...


def encode_traces(traces: Iterable[EncodedTrace]) -> bytes:
    """The same request for whole traces, each encoding its own spans."""
    groups: _Groups = {}
    resource: Resource | None = None
    scope: InstrumentationScope | None = None
    spans: list[bytes] = []
    for trace in traces:
        if trace.resource is not resource or trace.scope is not scope:  # seldom: one per process
            resource, scope = trace.resource, trace.scope
            spans = _group(groups, resource, scope)
        spans.extend(trace.encoded_spans())
    return _request(groups)


def _request(groups: _Groups) -> bytes:
    """The request's bytes from pieces joined once: each nested message's size is the
    sum of its pieces' (joining every level would copy the whole batch again per level)."""
    out: list[bytes] = []
    for resource, scopes in groups.values():
        body = [_field(1, attributes(1, resource.attributes))]
        for scope, encoded in scopes.values():
            pieces = [_field(1, _scope(scope))]
            for span in encoded:
                pieces += (_SPANS_TAG, _varint(len(span)), span)
            pieces.append(_text(3, (scope.schema_url if scope else "") or ""))
            body += (_SCOPE_SPANS_TAG, _varint(sum(map(len, pieces))))
            body += pieces
        body.append(_text(3, resource.schema_url or ""))
        out += (_RESOURCE_SPANS_TAG, _varint(sum(map(len, body))))
        out += body
    return b"".join(out)


# ExportTraceServiceRequest.resource_spans = 1, ResourceSpans.scope_spans = 2,
# ScopeSpans.spans = 2: the tags of the request's nested messages.
_RESOURCE_SPANS_TAG, _SCOPE_SPANS_TAG, _SPANS_TAG = _tag(1, _LEN), _tag(2, _LEN), _tag(2, _LEN)


class OtlpHttpExporter(SpanExporter):
    """POST batches to a collector's OTLP/HTTP traces URL (protobuf encoding), over one
    kept-alive connection (a new TCP connection and name lookup per batch had cost
    more than encoding it).

    A batch the collector does not take is dropped, not retried: the batch processor
    keeps exporting newer spans. A failing collector is logged when it starts and
    when it stops failing, not once per batch.
    """

    def __init__(
        self, url: str, timeout_s: float = EXPORT_TIMEOUT_S, headers: Headers = ()
    ) -> None:
        """`url` may hold a user and password (sent as HTTP Basic auth, never logged);
        `headers`: OTEL_EXPORTER_OTLP_*HEADERS' (telemetry/endpoint.py)."""
        self.url = shown_url(url)  # what the log lines show
        self._headers = request_headers(url, headers, CONTENT_TYPE)
        parts = urlsplit(without_userinfo(url))  # an http(s) URL with a host, checked at start
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._target = parts.path + (f"?{parts.query}" if parts.query else "")
        self._timeout_s = timeout_s
        self._connection: http.client.HTTPConnection | None = None
        self._is_failing = False
        self._is_shut = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._export(encode_request(spans))

    def export_traces(self, traces: Sequence[EncodedTrace]) -> SpanExportResult:
        """Whole traces that encode their own spans (no SDK span object is built)."""
        return self._export(encode_traces(traces))

    def _export(self, body: bytes) -> SpanExportResult:
        try:
            status = self._post(body)
        except (http.client.HTTPException, OSError, ValueError) as error:
            return self._failed(type(error).__name__)
        if not 200 <= status < 300:
            return self._failed(f"HTTP {status}")
        if self._is_failing:
            self._is_failing = False
            log.warning("trace export works again", extra={"fields": {"url": self.url}})
        return SpanExportResult.SUCCESS

    def _post(self, body: bytes) -> int:
        """POST one batch; a kept-alive connection the collector has closed meanwhile is
        replaced once (the batch may then arrive twice, never lost for that reason)."""
        if self._connection is None:
            return self._send(body)
        try:
            return self._send(body)
        except (http.client.HTTPException, OSError):
            return self._send(body)  # on a fresh connection

    def _send(self, body: bytes) -> int:
        connection = self._connection or self._connect()
        try:
            connection.request("POST", self._target, body, self._headers)
            response = connection.getresponse()
            response.read()
        except (http.client.HTTPException, OSError):
            self._close()
            raise
        if response.will_close:
            self._close()
        return response.status

    def _connect(self) -> http.client.HTTPConnection:
        if self._is_shut:  # after shutdown: no new connection (nor a retry on one)
            raise ConnectionAbortedError("the exporter is shut down")
        kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        self._connection = kind(self._host, self._port, timeout=self._timeout_s)
        return self._connection

    def _close(self) -> None:
        connection, self._connection = self._connection, None  # shutdown may race the export
        if connection is not None:
            connection.close()

    def _failed(self, error: str) -> SpanExportResult:
        if not self._is_failing:
            self._is_failing = True
            log.warning(
                "trace export failed; spans are dropped until the collector answers",
                extra={"fields": {"url": self.url, "error": error}},
            )
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        """Close the connection; an export blocked on it (another thread, a collector
        that never answers) fails at once instead of after its timeout."""
        self._is_shut = True
        connection = self._connection
        sock = None if connection is None else connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # a close alone does not wake a blocked read
                sock.shutdown(socket.SHUT_RDWR)
        self._close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
