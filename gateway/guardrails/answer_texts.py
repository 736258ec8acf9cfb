"""The texts of an answer: a whole answer, a Responses stream event that repeats whole
texts, an upstream's error (texts.py maps them); and whether a request asks for its
answer's text as JSON. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.guardrails.answer_values import STRUCTURE
from gateway.guardrails.json_texts import MAPPING, rewrite_json
from gateway.guardrails.message_texts import (
    TextFn,
    changed,
    each_item,
    read_annotation,
    read_arguments,
    read_message,
    read_name,
    read_part,
    read_text,
    scan,
)
from gateway.guardrails.plain_chat import counts_only, rewrite_plain_answer
from gateway.guardrails.request_fields import (
    ANSWER_KEYS,
    CHOICE_KEYS,
    CHUNK_KEYS,
    PART_KEYS,
    rewrite_unknown_keys,
)
from gateway.guardrails.response_items import read_response_item

_JSON_FORMATS = frozenset({"json_object", "json_schema"})


# An upstream's error object is relayed as it came: any of these may hold text it was
# given (`code` and `param` are identifiers by OpenAI's contract, not by every upstream's).
_ERROR_TEXT_FIELDS = ("message", "type", "param", "code")


def _error_object(value: Any, fn: TextFn) -> Any:
    """An `error`: OpenAI's object (its text fields), or a bare string (TGI)."""
    if isinstance(value, str):
        return scan(value, fn)
    if not isinstance(value, MAPPING):
        return rewrite_json(value, fn)
    return changed(value, {name: read_text(value.get(name), fn) for name in _ERROR_TEXT_FIELDS})


def rewrite_error(value: Mapping[str, Any], fn: TextFn) -> Mapping[str, Any]:
    """The texts of an error an upstream relays, in any shape error_fields reads: an
    `error` object's message or an `error` string, a top-level `message` (vLLM's bare
    error object, a Responses `error` event) and FastAPI's `detail` string; an error
    object's `type`, `param` and `code` too (an upstream may put any text there)."""
    return changed(
        value,
        {
            "error": _error_object(value.get("error"), fn),
            "message": read_text(value.get("message"), fn),
            "detail": read_text(value.get("detail"), fn),
        },
    )


def _choice(item: Any, fn: TextFn, is_json: bool) -> Any:
    """A chat or completions choice; its logprobs go when a rule rewrote its text (the
    tokens spell the text, the top alternatives most of it)."""
    if not isinstance(item, MAPPING):
        return rewrite_json(item, fn)
    message = read_message(item.get("message"), fn, is_json)
    checked = changed(item, {"message": message, "text": read_text(item.get("text"), fn)})
    # A key of the choice's own that the gateway does not know (vLLM's `stop_reason`, the
    # stop string met) reaches the client too.
    checked = rewrite_unknown_keys(CHOICE_KEYS, checked, fn)
    if checked is not item and checked.get("logprobs") is not None:
        return {**checked, "logprobs": None}
    return checked


def rewrite_top_fields(
    known: frozenset[str], payload: Mapping[str, Any], fn: TextFn
) -> Mapping[str, Any]:
    """`payload` with the texts of its top-level fields `known` lacks rewritten, and of a
    `usage` that holds more than numbers (the same object when none changed; a payload
    with known fields only and numeric usage costs a set check)."""
    checked: Mapping[str, Any] = rewrite_unknown_keys(known, payload, fn)
    usage = checked.get("usage")
    if usage is not None and not counts_only(usage):
        checked = changed(checked, {"usage": rewrite_json(usage, fn)})
    return checked


def rewrite_chunk_fields(payload: Mapping[str, Any], fn: TextFn) -> Mapping[str, Any]:
    """A chat or completions stream event's top-level fields, as `rewrite_top_fields`."""
    return rewrite_top_fields(CHUNK_KEYS, payload, fn)


def rewrite_answer(
    endpoint: str, payload: Mapping[str, Any], fn: TextFn, *, is_json: bool = False
) -> Mapping[str, Any]:
    """A whole answer (or a Responses `response` object), an error body included (an
    upstream's 200 that is an error object, a failed Responses object). `is_json`: the
    request asked for JSON (`asks_for_json`), so the message text is read as arguments are."""
    if endpoint == "chat" and not is_json:
        plain = rewrite_plain_answer(payload, fn)
        if plain is not None:
            return plain
    return walk_answer(endpoint, payload, fn, is_json=is_json)


def walk_answer(
    endpoint: str, payload: Mapping[str, Any], fn: TextFn, *, is_json: bool = False
) -> Mapping[str, Any]:
    """`rewrite_answer` field by field, whatever the answer's shape."""
    if endpoint in ("chat", "completions"):
        answer = changed(
            payload,
            {"choices": each_item(payload.get("choices"), fn, lambda c: _choice(c, fn, is_json))},
        )
        return rewrite_top_fields(ANSWER_KEYS[endpoint], rewrite_error(answer, fn), fn)
    if endpoint == "responses":
        output = each_item(
            payload.get("output"), fn, lambda item: read_response_item(item, fn, is_json)
        )
        output_text = payload.get("output_text")
        answer = changed(
            payload,
            {
                "output": output,
                "output_text": read_arguments(output_text, fn)
                if is_json
                else read_text(output_text, fn),
                "error": _error_object(payload.get("error"), fn),
            },
        )
        return rewrite_top_fields(ANSWER_KEYS["responses"], answer, fn)
    return rewrite_error(payload, fn)


# A Responses stream event's keys that are structure, or that `rewrite_response_event`
# reads by name; any other (a provider's own, a `*.done` event's field this gateway does
# not know) is scanned whole, as a chat event's unknown top-level field is.
_EVENT_KEYS = STRUCTURE | {"param", "delta", "partial_image_b64"}
_EVENT_KEYS |= {"message", "error", "text", "refusal", "arguments", "input", "code", "name"}
_EVENT_KEYS |= {"annotation", "part", "item", "response"}
# Events whose `delta` is base64 (audio), not text; any other event's `delta` that is not
# a growing text (stream_scanner.py reads those) is scanned whole.
_BINARY_DELTAS = frozenset({"response.audio.delta"})


def _event_part(part: Any, fn: TextFn, is_json: bool) -> Any:
    """A content part an event carries: its texts and every key the gateway does not know."""
    return rewrite_unknown_keys(PART_KEYS, read_part(part, fn, is_json), fn)


def rewrite_response_event(
    event: Mapping[str, Any], fn: TextFn, *, is_json: bool = False
) -> Mapping[str, Any]:
    """A Responses stream event but a growing text's delta: one that repeats whole texts
    (`*.done`, `response.completed`), carries an item or a part (`*.added`), an error (an
    `error` event's message, a failed `response`'s error), and every string of a key it
    does not know (the structure aside: ids, indexes, the sequence number; a partial
    image's and audio's base64 are not text). `is_json`: as for `rewrite_answer`."""
    kind = event.get("type")
    text = event.get("text")
    json_text = is_json and kind == "response.output_text.done"
    delta = event.get("delta")
    checked = changed(
        event,
        {
            "delta": delta if kind in _BINARY_DELTAS else read_text(delta, fn),
            "name": read_name(event.get("name"), fn),
            "message": read_text(event.get("message"), fn),
            "error": _error_object(event.get("error"), fn),
            "text": read_arguments(text, fn) if json_text else read_text(text, fn),
            "refusal": read_text(event.get("refusal"), fn),
            "arguments": read_arguments(event.get("arguments"), fn),
            "input": read_text(event.get("input"), fn),
            "code": read_text(event.get("code"), fn),
            "annotation": read_annotation(event.get("annotation"), fn),
            "part": _event_part(event.get("part"), fn, is_json),
            "item": read_response_item(event.get("item"), fn, is_json),
            "response": (
                rewrite_answer("responses", event["response"], fn, is_json=is_json)
                if isinstance(event.get("response"), Mapping)
                else event.get("response")
            ),
        },
    )
    whole: Mapping[str, Any] = rewrite_unknown_keys(_EVENT_KEYS, checked, fn)
    if whole.get("text") is not text and event.get("logprobs"):
        return {**whole, "logprobs": []}
    return whole


def asks_for_json(endpoint: str, body: Mapping[str, Any]) -> bool:
    """Whether the request asks for its answer's text as JSON (chat `response_format`,
    Responses `text.format`: `json_object` or `json_schema`), which its client parses."""
    if endpoint == "chat":
        options: Any = body.get("response_format")
    elif endpoint == "responses":
        text = body.get("text")
        options = text.get("format") if isinstance(text, MAPPING) else None
    else:
        return False
    if options is None:  # most requests: no ABC check for a missing field
        return False
    kind = options.get("type") if isinstance(options, MAPPING) else None
    return isinstance(kind, str) and kind in _JSON_FORMATS
