"""Read and check a JSON request body: content coding and type, size, syntax, nesting,
numbers, and the per-endpoint field rules (gateway/api/field_table.py, fields.py).

Each refusal names the offending field in `param`, as OpenAI does. A body is
refused when it could not be forwarded as sent: nested deeper than MAX_DEPTH
(orjson re-encodes at most 254 levels; we keep a margin), or holding an
integer beyond 64 bits (orjson would read it as a float and forward another number):
in a field with a bound (an inference endpoint's `max_tokens`, `n`...) as any value
past that bound is refused, elsewhere naming the field and the 64-bit range.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import Receive

from gateway.api.field_table import beyond_64_bits_refusal, first_refusal
from gateway.errors import (
    BodyTooLarge,
    ClientDisconnected,
    InvalidRequest,
    NestingTooDeep,
    UnsupportedContentEncoding,
    UnsupportedContentType,
    cut,
    quoted,
)
from gateway.providers.base import Endpoint

JSON_TYPES = ("application/json",)
# Levels of nesting a body may have, the body object itself being level 1. No
# OpenAI request needs more than a few dozen (deep JSON schemas of tools included).
MAX_DEPTH = 128
# The integers orjson reads and writes exactly; beyond them it reads a float.
MIN_INTEGER = -(2**63)
MAX_INTEGER = 2**64 - 1
# Every integer outside that range has at least 19 digits: bodies without such a
# run of digits (nearly all) skip the exact re-parse. (A translate and a search
# are C loops; a regex `\d{19}` is ten times slower.)
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_DIGIT_RUN = b"0" * 19
# orjson stops reading past 1024 levels, with this message (before any other error past
# that point): such a body is too deep for MAX_DEPTH, not malformed.
_ORJSON_TOO_DEEP = "depth limit exceeded"
# orjson reads an integer beyond its range as a float at least this large.
_BIG_FLOAT = float(2**63)
# A body this large is decoded and checked on a thread: on the loop, each 4 MB body held
# it ~20 ms, and a burst of them queued every other request behind them all (20 at once:
# a small request waited 0.5 s). Below it, a thread's hop costs more than it saves.
OFF_LOOP_BYTES = 1 << 20
# A body with more brackets than MAX_DEPTH is walked (`measure`), at ~1 µs per value: past
# this size the walk goes to a thread too.
WALKED_ON_LOOP_BYTES = 64 << 10


async def read_json_object(
    request: Request, limit: int, endpoint: Endpoint | None = None
) -> dict[str, Any]:
    """The body as a JSON object; raises an InvalidRequest, or ClientDisconnected
    when the client hangs up in the middle of its upload. `endpoint`: the inference
    endpoint whose field bounds refuse an integer past 64 bits (check_integers)."""
    raw, body = await parse_json_object(request, limit, endpoint)
    await check_forwardable_soon(raw, body, endpoint)
    return body


async def parse_json_object(
    request: Request, limit: int, endpoint: Endpoint | None = None
) -> tuple[bytes, dict[str, Any]]:
    """(raw, body) of a body that parses as a JSON object, not yet checked as
    forwardable: read_json_object without its last step, for a caller that wants
    the parsed body even when that step refuses it (the model alias of its record)."""
    check_identity_encoding(request.headers.getlist("content-encoding"))
    content_type = request.headers.get("content-type")
    if content_type:
        media = content_type.partition(";")[0].strip().lower()
        if media not in JSON_TYPES and not media.endswith("+json"):
            raise UnsupportedContentType(
                f"Unsupported content type {quoted(media)}: send 'Content-Type: application/json'."
            )
    check_declared_length(request.headers.get("content-length"), limit)
    raw = await read_body_bytes(request.receive, limit)
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw) if len(raw) < OFF_LOOP_BYTES else await _loads_off_loop(raw)
    except orjson.JSONDecodeError as error:
        if error.msg == _ORJSON_TOO_DEEP:  # valid or not, it is too deep: say so
            raise NestingTooDeep(
                f"The request body is nested more than {MAX_DEPTH} levels deep; "
                f"the gateway forwards at most {MAX_DEPTH} levels."
            ) from None
        # orjson cannot read an integer of more than ~308 digits at all: name its field.
        check_integers(raw, endpoint)
        raise InvalidRequest(
            "We could not parse the JSON body of your request. (The body must be valid JSON.)"
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return raw, body


def check_identity_encoding(values: list[str]) -> None:
    """Refuse a body in any content coding but `identity` (any case), from the header's
    values alone: the gateway does not decompress bodies, so it does not read this one."""
    for value in values:
        for coding in value.split(","):
            name = coding.strip().lower()
            if name and name != "identity":
                raise UnsupportedContentEncoding(
                    f"Unsupported content encoding {quoted(name)}: the gateway does not "
                    "decompress request bodies; send an uncompressed JSON body (no "
                    "Content-Encoding header)."
                )


def check_declared_length(declared: str | None, limit: int) -> None:
    """Refuse at once a body whose Content-Length says it is over `limit`: no waiting
    for bytes that would be refused anyway (a client may never send them)."""
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"The request body is larger than the limit of {limit} bytes.")


async def read_body_bytes(receive: Receive, limit: int) -> bytes:
    """The request body from the ASGI messages (one, for most requests)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            raise ClientDisconnected("The client disconnected while sending its request.")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"The request body is larger than the limit of {limit} bytes.")
        if not message.get("more_body", False):
            if not chunks:
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)


async def _loads_off_loop(raw: bytes) -> Any:
    return await asyncio.to_thread(orjson.loads, raw)


async def check_forwardable_soon(
    raw: bytes, body: dict[str, Any], endpoint: Endpoint | None = None
) -> None:
    """check_forwardable, on a thread for a large body or a long walk."""
    if len(raw) < WALKED_ON_LOOP_BYTES:
        check_forwardable(raw, body, endpoint)
        return
    # Counted once: check_forwardable takes the count rather than scanning again.
    brackets = bracket_count(raw) if len(raw) < OFF_LOOP_BYTES else None
    if brackets is not None and brackets <= MAX_DEPTH:
        check_forwardable(raw, body, endpoint, brackets)
    else:
        await asyncio.to_thread(check_forwardable, raw, body, endpoint, brackets)


def is_large(raw: bytes) -> bool:
    """A body each walk of which goes to a thread (its fields' checks, the limits'
    estimate): half a million short messages take half a second to walk (probe p25)."""
    return len(raw) >= WALKED_ON_LOOP_BYTES


async def check_request_soon(
    raw: bytes, body: dict[str, Any], endpoint: Endpoint
) -> tuple[str, bool]:
    """check_forwardable, then check_body: (model, is_stream). A large body on a thread,
    both walks in one hop."""
    if not is_large(raw):
        check_forwardable(raw, body, endpoint)
        return check_body(endpoint, body)
    return await asyncio.to_thread(_check_request, raw, body, endpoint)


def _check_request(raw: bytes, body: dict[str, Any], endpoint: Endpoint) -> tuple[str, bool]:
    check_forwardable(raw, body, endpoint)
    return check_body(endpoint, body)


def bracket_count(raw: bytes) -> int:
    """How many `[` and `{` bytes `raw` holds (in strings too): an upper bound of its depth."""
    return raw.count(b"[") + raw.count(b"{")


def check_forwardable(
    raw: bytes,
    body: dict[str, Any],
    endpoint: Endpoint | None = None,
    brackets: int | None = None,
) -> None:
    """Refuse a parsed body that would not reach the upstream as the client sent it.

    Most bodies have fewer brackets than MAX_DEPTH, so cannot nest too deep, and
    no run of 19 digits, so hold no integer beyond 64 bits: two C-speed scans of
    the bytes clear them. Others are walked once, level by level. `brackets`: the
    body's `bracket_count`, when the caller has counted already.
    """
    if brackets is None:
        brackets = bracket_count(raw)
    if brackets <= MAX_DEPTH:
        may_hold_big_integer = _DIGIT_RUN in raw.translate(_DIGITS_AS_ZERO)
    else:
        depth, may_hold_big_integer = measure(body)
        if depth > MAX_DEPTH:
            field = too_deep_field(body)
            raise NestingTooDeep(
                f"The value of {quoted(field)} is nested more than {MAX_DEPTH} levels deep; "
                f"the gateway forwards at most {MAX_DEPTH} levels.",
                param=cut(field),
            )
    if may_hold_big_integer:
        check_integers(raw, endpoint)


def check_integers(raw: bytes, endpoint: Endpoint | None = None) -> None:
    """Refuse a body holding an integer orjson would not carry exactly, naming it: by
    the field's own bound when `endpoint` has one for it (beyond_64_bits_refusal)."""
    found = out_of_range_integer(raw)
    if found is not None:
        path, digits = found
        if endpoint is not None:
            refusal = beyond_64_bits_refusal(endpoint, path, digits)
            if refusal is not None:
                raise refusal
        above = not digits.startswith("-")
        bound = f"<= {MAX_INTEGER}" if above else f">= {MIN_INTEGER}"
        # No code: a limit of the gateway's transport, not a field's documented range
        # (and the admin API has refused these with code null since it was hardened).
        # An inference field's own bound, when it has one, refused it above.
        raise InvalidRequest(
            f"Invalid {quoted(path)}: integer {'above maximum' if above else 'below minimum'} "
            f"value. Expected a value {bound}, but got {cut(digits, 64)} instead.",
            param=cut(path),
        )


def measure(body: dict[str, Any]) -> tuple[int, bool]:
    """(depth, up to MAX_DEPTH + 1; whether a float may be an integer orjson could not
    hold), in one walk level by level: no recursion, a hostile body cannot exhaust
    the stack, and the walk stops at the first level beyond MAX_DEPTH."""
    level: list[Any] = [body]
    depth = 1
    may_hold_big_integer = False
    while True:
        below: list[Any] = []
        for node in level:
            for child in node.values() if type(node) is dict else node:
                kind = type(child)
                if kind is dict or kind is list:
                    below.append(child)
                elif kind is float and (child >= _BIG_FLOAT or child <= -_BIG_FLOAT):
                    may_hold_big_integer = True
        if not below:
            return depth, may_hold_big_integer
        depth += 1
        if depth > MAX_DEPTH:
            return depth, may_hold_big_integer
        level = below


def too_deep_field(body: dict[str, Any]) -> str:
    """The first top-level field nesting deeper than MAX_DEPTH (the body is too deep)."""
    for key, value in body.items():
        if type(value) in (dict, list) and measure({key: value})[0] > MAX_DEPTH:
            return key
    raise AssertionError("too_deep_field called on a body within MAX_DEPTH")


class _OutOfRange(str):
    """The digits of an integer orjson cannot carry exactly (kept as text)."""


def _parse_int(digits: str) -> int | str:
    # Checked by length first: Python refuses int() of more than 4300 digits.
    if len(digits) <= 21:
        value = int(digits)
        if MIN_INTEGER <= value <= MAX_INTEGER:
            return value
    return _OutOfRange(digits)


def out_of_range_integer(raw: bytes) -> tuple[str, str] | None:
    """(path, digits) of the first integer beyond 64 bits in a JSON body, or None
    (also when the body is not JSON at all)."""
    if _DIGIT_RUN not in raw.translate(_DIGITS_AS_ZERO):
        return None
    try:
        exact = json.loads(raw, parse_int=_parse_int)
    except (ValueError, RecursionError):  # not JSON, or nested too deep for the stdlib
        return None
    stack: list[tuple[str, Any]] = [("", exact)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, _OutOfRange):
            return path, str(node)
        if isinstance(node, dict):
            items = [(f"{path}.{k}" if path else k, v) for k, v in node.items()]
        elif isinstance(node, list):
            items = [(f"{path}[{i}]", v) for i, v in enumerate(node)]
        else:
            continue
        stack.extend(reversed(items))  # depth first, in document order
    return None


def model_named(body: dict[str, Any]) -> str | None:
    """The body's `model` when it is a string, whatever else the body holds (checked or not)."""
    model = body.get("model")
    return model if isinstance(model, str) else None


def check_body(endpoint: Endpoint, body: dict[str, Any]) -> tuple[str, bool]:
    """Check the fields the gateway and the upstream rely on; return (model, is_stream)."""
    refusal = first_refusal(endpoint, body)
    if refusal is not None:
        raise refusal
    return body["model"], body.get("stream") is True
