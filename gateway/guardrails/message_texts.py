"""The texts of a chat message, its content parts and tool calls, and the readers
every endpoint's texts are read with (texts.py maps them): each takes a value and the
text function, and returns the value with the texts the function rewrote (the same
object when none). Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gateway.guardrails.answer_values import read_values
from gateway.guardrails.joined_parts import rewrite_joined_parts
from gateway.guardrails.json_escapes import Escaped
from gateway.guardrails.json_layout import layout_of_json, numbers_read
from gateway.guardrails.json_texts import MAPPING, check_name, rewrite_json
from gateway.guardrails.request_fields import (
    AUDIO_KEYS,
    CUSTOM_CALL_KEYS,
    FUNCTION_CALL_KEYS,
    MESSAGE_KEYS,
    PART_KEYS,
    TOOL_CALL_KEYS,
    rewrite_unknown_keys,
)
from gateway.guardrails.scanner import Redaction, apply_redactions
from gateway.guardrails.walk_cost import ENTRY_COST, layout_cost, spend_reading

# Called on each text: the spans to replace in it, and with what (none: leave it).
TextFn = Callable[[str], Sequence[Redaction]]
_JSON_PART_TYPES = frozenset({"text", "output_text"})  # a message's answer text


def changed(original: Mapping[str, Any], updates: dict[str, Any]) -> Mapping[str, Any]:
    """`original` with the `updates` that are new objects (itself when none is)."""
    changes = {k: v for k, v in updates.items() if v is not original.get(k)}
    return {**original, **changes} if changes else original


def each_item(value: Any, fn: TextFn, each: Callable[[Any], Any]) -> Any:
    """`each` on every item of a list (charged to `fn`'s inline budget: walk_cost.py)."""
    if not isinstance(value, list):
        return rewrite_json(value, fn)
    spend = getattr(fn, "spend", None)
    if spend is not None:
        spend(len(value) * ENTRY_COST)
    out = [each(item) for item in value]
    return out if any(a is not b for a, b in zip(out, value, strict=True)) else value


def scan(text: str, fn: TextFn) -> str:
    """`text` with what `fn` says to replace in it replaced (the same object when none)."""
    spans = fn(text)
    return apply_redactions(text, spans) if spans else text


def read_text(value: Any, fn: TextFn) -> Any:
    """A text; anything else there (an object, an array) is scanned whole, every string
    and key in it, as an unknown field is (json_texts.py): never passed on unread."""
    return scan(value, fn) if isinstance(value, str) else rewrite_json(value, fn)


def read_strings(value: Any, fn: TextFn) -> Any:
    """A string or a list of strings (anything else in it: `read_text`)."""
    if isinstance(value, list):
        return each_item(value, fn, lambda item: read_text(item, fn))
    return read_text(value, fn)


def read_annotation(value: Any, fn: TextFn) -> Any:
    """A citation (chat: a URL's, under `url_citation`; Responses: inline, a URL's, a
    file's or a container file's): its title, URL, file name and every other string but
    its structure (indexes, ids: answer_values.py)."""
    return read_values(value, fn) if isinstance(value, dict) else rewrite_json(value, fn)


def rewrite_annotations(value: Any, fn: TextFn) -> Any:
    """A list of annotations (a chat message's or delta's URL citations, a text part's)."""
    return each_item(value, fn, lambda a: read_annotation(a, fn))


def read_part(item: Any, fn: TextFn, is_json: bool = False) -> Any:
    """A content part; `is_json`: its output text is JSON the client parses."""
    if not isinstance(item, MAPPING):
        return read_text(item, fn)
    # Each text key is read whatever the part's type (a refusal's `text`, an image's
    # `refusal`): a key the gateway knows is never passed on unread. A file's name is text
    # the model reads (chat: under `file`; Responses: inline); its data is not.
    kind = item.get("type")
    text = item.get("text")
    json_text = is_json and kind in _JSON_PART_TYPES
    updates = {
        "text": read_arguments(text, fn) if json_text else read_text(text, fn),
        "refusal": read_text(item.get("refusal"), fn),
        "filename": read_text(item.get("filename"), fn),
        "file": _FILE_NAME(item.get("file"), fn),
        "annotations": rewrite_annotations(item.get("annotations"), fn),
    }
    if updates["text"] is not text and item.get("logprobs"):
        updates["logprobs"] = []  # the tokens spell the text a rule rewrote
    return changed(item, updates)


def read_content(value: Any, fn: TextFn) -> Any:
    """Message content: a string, or parts of which the text ones are scanned, each alone
    and all joined, as an upstream joins them (joined_parts.py)."""
    if isinstance(value, list):
        return rewrite_joined_parts(each_item(value, fn, lambda item: read_part(item, fn)), fn)
    return read_text(value, fn)


def read_json_content(value: Any, fn: TextFn) -> Any:
    """Message content the request asked to be JSON: read as arguments are."""
    if isinstance(value, list):
        return each_item(value, fn, lambda item: read_part(item, fn, is_json=True))
    return read_arguments(value, fn)


def read_arguments(value: Any, fn: TextFn) -> Any:
    """Arguments (JSON text), scanned as their reader sees them (escapes decoded); a
    redaction is written into the text as written, which is otherwise kept as it came,
    and keeps valid JSON valid (json_layout.py). Arguments sent as an object: `read_text`."""
    if not isinstance(value, str):
        return rewrite_json(value, fn)
    spend = getattr(fn, "spend", None)
    if spend is not None:
        spend_reading(spend, value)
    escaped = Escaped(value, numbers_read(value))
    spans = fn(escaped.view)
    if not spans:
        return value
    if spend is not None:
        spend(layout_cost(value))
    return escaped.redacted(spans, layout=layout_of_json(value))


def _function(value: Any, fn: TextFn) -> Any:
    """A call's `function`: its arguments, and the texts of keys the gateway does not know."""
    if not isinstance(value, MAPPING):
        return rewrite_json(value, fn)
    value = rewrite_unknown_keys(FUNCTION_CALL_KEYS, value, fn)
    return changed(value, {"arguments": read_arguments(value.get("arguments"), fn)})


def _custom_call(value: Any, fn: TextFn) -> Any:
    """A chat custom tool call's `custom`: its free-form `input`."""
    if not isinstance(value, MAPPING):
        return rewrite_json(value, fn)
    value = rewrite_unknown_keys(CUSTOM_CALL_KEYS, value, fn)
    return changed(value, {"input": read_text(value.get("input"), fn)})


def _tool_calls(value: Any, fn: TextFn) -> Any:
    """Chat tool calls: a function's arguments, a custom tool's input, and the texts of
    keys the gateway does not know (a provider's own, on the call or its function)."""

    def call(item: Any) -> Any:
        if not isinstance(item, MAPPING):
            return rewrite_json(item, fn)
        item = rewrite_unknown_keys(TOOL_CALL_KEYS, item, fn)
        return changed(
            item,
            {
                "function": _function(item.get("function"), fn),
                "custom": _custom_call(item.get("custom"), fn),
            },
        )

    return each_item(value, fn, call)


def read_name(value: Any, fn: TextFn) -> Any:
    """A name (a tool's): scanned, never rewritten (json_texts.check_name)."""
    return check_name(value, fn) if isinstance(value, str) else rewrite_json(value, fn)


def _called_name(value: Any, fn: TextFn) -> Any:
    """A call's `function` or `custom`: the name of the tool it called, as in `tools`."""
    if not isinstance(value, MAPPING):
        return rewrite_json(value, fn)
    return changed(value, {"name": read_name(value.get("name"), fn)})


def unknown_part_keys(parts: list[Any], fn: TextFn) -> Any:
    """The texts of the keys the gateway does not know in a request's content parts."""
    return each_item(parts, fn, lambda part: rewrite_unknown_keys(PART_KEYS, part, fn))


def read_request_part(part: Any, fn: TextFn) -> Any:
    """A content part a request sends alone (a prompt's variable): its texts and the
    texts of the keys the gateway does not know."""
    return rewrite_unknown_keys(PART_KEYS, read_part(part, fn), fn)


def read_message(message: Any, fn: TextFn, is_json: bool = False) -> Any:
    """A chat message (a request's, or an answer's): its texts, the texts of the keys the
    gateway does not know in it and in its parts (`thinking`, `reasoning_details`, a
    provider's own fields): the model reads them, or the client shows them; and the
    names of the tools it called (scanned, never rewritten: json_texts.check_name)."""
    message = _chat_message(message, fn, is_json)
    message = rewrite_unknown_keys(MESSAGE_KEYS, message, fn)
    if isinstance(message, MAPPING) and isinstance(message.get("content"), list):
        message = changed(message, {"content": unknown_part_keys(message["content"], fn)})
    if not isinstance(message, MAPPING) or (
        message.get("tool_calls") is None and message.get("function_call") is None
    ):
        return message  # most messages call no tool

    def call(item: Any) -> Any:
        if not isinstance(item, MAPPING):
            return rewrite_json(item, fn)
        return changed(
            item,
            {
                "function": _called_name(item.get("function"), fn),
                "custom": _called_name(item.get("custom"), fn),
            },
        )

    return changed(
        message,
        {
            "tool_calls": each_item(message.get("tool_calls"), fn, call),
            "function_call": _called_name(message.get("function_call"), fn),
        },
    )


def _audio(value: Any, fn: TextFn) -> Any:
    """A chat message's `audio`: its transcript and any key of a provider's own; its
    `data` is base64 audio (not text, as a request's audio and files are not scanned)."""
    if not isinstance(value, MAPPING):
        return rewrite_json(value, fn)
    value = rewrite_unknown_keys(AUDIO_KEYS, value, fn)
    return changed(value, {"transcript": read_text(value.get("transcript"), fn)})


def _chat_message(message: Any, fn: TextFn, is_json: bool = False) -> Any:
    if not isinstance(message, MAPPING):
        return rewrite_json(message, fn)
    content = read_json_content if is_json else read_content
    updates = {"content": content(message.get("content"), fn)}
    return changed(message, read_present(message, _MESSAGE_FIELDS, fn, updates))


Reader = Callable[[Any, TextFn], Any]  # the texts of a value: `read_text`, `read_content`, ...


def read_present(
    value: Mapping[str, Any],
    fields: tuple[tuple[str, Reader], ...],
    fn: TextFn,
    updates: dict[str, Any],
) -> dict[str, Any]:
    """`updates` plus each of `fields` present in `value`, read by its reader (absent or
    null: nothing to read, as each reader keeps None)."""
    for name, read in fields:
        field = value.get(name)
        if field is not None:
            updates[name] = read(field, fn)
    return updates


# A chat message's fields besides its content, and how each is read.
_MESSAGE_FIELDS: tuple[tuple[str, Reader], ...] = (
    ("name", read_text),
    ("refusal", read_text),
    ("reasoning_content", read_text),
    ("reasoning", read_text),
    ("audio", _audio),
    ("annotations", rewrite_annotations),
    ("tool_calls", _tool_calls),
    ("function_call", _function),
)


def field_reader(name: str, read: Reader) -> Reader:
    """`read` on field `name` of a mapping."""

    def reader(value: Any, fn: TextFn) -> Any:
        if not isinstance(value, MAPPING):
            return rewrite_json(value, fn)
        return changed(value, {name: read(value.get(name), fn)})

    return reader


_FILE_NAME = field_reader("filename", read_text)
