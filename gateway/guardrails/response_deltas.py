"""What a Responses stream's delta events are, for the output scanner: which `*.delta`
grows a text (the known ones, and any other whose delta is a string or a structure of
strings: a shell call's stdout and stderr, a vendor's event), where each string of a
structured delta stands, and which text a delta grows. Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.guardrails.event_shape import Key
from gateway.guardrails.stream_values import choice_key

# Responses events whose `delta` is a piece of a text; the texts that are JSON.
RESPONSE_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_text.delta",
        "response.function_call_arguments.delta",
        "response.custom_tool_call_input.delta",
        "response.audio.transcript.delta",
        "response.code_interpreter_call_code.delta",
        "response.mcp_call_arguments.delta",
    }
)
JSON_DELTAS = frozenset(
    {"response.function_call_arguments.delta", "response.mcp_call_arguments.delta"}
)
OUTPUT_TEXT_DELTA = "response.output_text.delta"  # JSON when the request asked for it
# `*.delta` events that are no text a client reads: base64 audio.
NOT_TEXT_DELTAS = frozenset({"response.audio.delta"})
# A Responses delta event's keys but its text: any other is reviewed whole.
DELTA_EVENT_KEYS = frozenset(
    {"type", "item_id", "output_index", "content_index", "summary_index", "command_index"}
    | {"delta", "sequence_number", "logprobs", "obfuscation"}
)
PART_INDEXES = ("content_index", "summary_index", "command_index")


def grows_a_text(kind: object, delta: object) -> bool:
    """Is this Responses event a piece of a growing text? The known deltas, and any other
    `*.delta` (a shell call's command, a vendor's or a later API's event: probe p16)
    whose delta is a string, or a structure of strings (a shell call's stdout and
    stderr beside a `truncated` flag; a list), each string a text of its own."""
    if type(kind) is not str or not kind.endswith(".delta") or kind in NOT_TEXT_DELTAS:
        return False
    if type(delta) is str:
        return True
    return kind not in RESPONSE_DELTAS and string_leaves(delta) is not None


Leaf = tuple[str | int, ...]  # where a string stands in a delta: keys and indexes
_LEAF_DEPTH = 8
_LEAF_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def string_leaves(value: object) -> list[tuple[Leaf, str]] | None:
    """The strings of a structured delta, by place; None when it holds none, nests
    deeper than _LEAF_DEPTH, or has a key no identifier (such a delta is reviewed whole)."""
    leaves: list[tuple[Leaf, str]] = []

    def walk(node: object, path: Leaf) -> bool:
        if type(node) is str:
            leaves.append((path, node))
            return True
        if len(path) >= _LEAF_DEPTH:
            return type(node) not in (dict, list)
        if type(node) is dict:
            return all(
                type(key) is str
                and _LEAF_KEY.fullmatch(key) is not None
                and walk(item, (*path, key))
                for key, item in node.items()
            )
        if type(node) is list:
            return all(walk(item, (*path, index)) for index, item in enumerate(node))
        return True  # a number, a flag, null: structure

    if type(value) not in (dict, list) or not walk(value, ()) or not leaves:
        return None
    return leaves


def with_leaf(value: Any, path: Leaf, text: str) -> Any:
    """`value` with the string at `path` replaced by `text` (a copy along the path)."""
    if not path:
        return text
    head, rest = path[0], path[1:]
    if type(value) is dict:
        return {**value, head: with_leaf(value[head], rest, text)}
    copy = list(value)
    copy[head] = with_leaf(copy[head], rest, text)  # type: ignore[index]  # an int here
    return copy


def emptied(value: Any) -> Any:
    """`value` with every string made "": the shape a flush event fills one text into."""
    if type(value) is str:
        return ""
    if type(value) is dict:
        return {key: emptied(item) for key, item in value.items()}
    if type(value) is list:
        return [emptied(item) for item in value]
    return value


def keys_of(value: Any) -> list[str]:
    """Every key in a structured delta (its strings are texts; its keys are reviewed)."""
    if type(value) is dict:
        return [*value, *(key for item in value.values() for key in keys_of(item))]
    if type(value) is list:
        return [key for item in value for key in keys_of(item)]
    return []


def delta_key(kind: object, parsed: dict[str, Any], member: Leaf | None = None) -> Key:
    """The text a delta event grows: its kind (and place, for a structured delta), its
    item (its id, else its output index) and its part. Keys a client may read as one are
    one text; an unhashable one is one odd text."""
    item = parsed.get("item_id")
    if item is None:
        item = parsed.get("output_index")
    item = item if isinstance(item, str) or item is None else choice_key(item, 0)
    part = next((parsed[name] for name in PART_INDEXES if name in parsed), None)
    name = kind if member is None else f"{kind}/{'/'.join(map(str, member))}"
    return (name, item, None if part is None else choice_key(part, 0))
