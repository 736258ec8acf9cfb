"""The texts of the items of a Responses `input` or `output` list, by item type
(texts.py maps them). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.guardrails.answer_values import read_values
from gateway.guardrails.json_texts import rewrite_json
from gateway.guardrails.message_texts import (
    Reader,
    TextFn,
    changed,
    field_reader,
    read_arguments,
    read_content,
    read_json_content,
    read_name,
    read_strings,
    read_text,
    unknown_part_keys,
)
from gateway.guardrails.request_fields import (
    RESPONSES_MESSAGE_KEYS,
    rewrite_unknown_keys,
)

# Where the texts of a Responses `input` or `output` item are, by its type: each reader
# rewrites one field (nested ones through `field_reader`). An object a tool's item holds
# (a web search's `action` and its `sources`, a code interpreter's `outputs`, file search
# `results` and their `attributes`, a shell's `action`, a patch's `operation`) is read
# whole, every string in it but its structure (answer_values.py). An item of any other
# type is scanned whole but for its ids (`read_response_item`).
_ITEM_TEXTS: dict[str, tuple[Reader, ...]] = {
    "message": (field_reader("content", read_content),),
    "function_call": (field_reader("arguments", read_arguments),),
    "function_call_output": (field_reader("output", read_content),),
    "custom_tool_call": (field_reader("input", read_text),),
    "custom_tool_call_output": (field_reader("output", read_content),),
    "reasoning": (field_reader("summary", read_content), field_reader("content", read_content)),
    "mcp_call": (field_reader("arguments", read_arguments), field_reader("output", read_text)),
    "mcp_approval_request": (field_reader("arguments", read_arguments),),
    "code_interpreter_call": (
        field_reader("code", read_text),
        field_reader("outputs", read_values),
    ),
    "local_shell_call": (field_reader("action", read_values),),
    "local_shell_call_output": (field_reader("output", read_text),),
    "shell_call": (field_reader("action", read_values),),
    "shell_call_output": (field_reader("output", read_values),),
    "apply_patch_call": (field_reader("operation", read_values),),
    "web_search_call": (field_reader("action", read_values),),
    "file_search_call": (
        field_reader("queries", read_strings),
        field_reader("results", read_values),
    ),
    "image_generation_call": (field_reader("revised_prompt", read_text),),
}


# An item's fields that are structure, not text: an item of a type this gateway does
# not know is otherwise scanned whole.
_ITEM_IDS = frozenset({"type", "id", "call_id", "status"})


# A message item of an answer the request asked to be JSON.
_JSON_MESSAGE: tuple[Reader, ...] = (field_reader("content", read_json_content),)


# The name of the tool a Responses call item of a request called, as in `tools`.
_CALLED_NAME = field_reader("name", read_name)


# Per item type, the keys its readers read or that hold no text (ids, an image's base64
# `result`, encrypted reasoning); any other key of an item is scanned whole (a provider's
# own, an MCP call's `error`, its `server_label`, an image's `size`), as an unknown
# request field is.
_ITEM_KEYS: dict[str, frozenset[str]] = {
    kind: _ITEM_IDS | keys
    for kind, keys in {
        "message": RESPONSES_MESSAGE_KEYS,
        "function_call": {"name", "arguments"},
        "function_call_output": {"output"},
        "custom_tool_call": {"name", "input"},
        "custom_tool_call_output": {"output"},
        "reasoning": {"summary", "content", "encrypted_content"},
        "mcp_call": {"name", "arguments", "output", "approval_request_id"},
        "mcp_approval_request": {"name", "arguments"},
        "code_interpreter_call": {"code", "outputs", "container_id"},
        "local_shell_call": {"action"},
        "local_shell_call_output": {"output"},
        "shell_call": {"action"},
        "shell_call_output": {"output", "max_output_length"},
        "apply_patch_call": {"operation"},
        "web_search_call": {"action"},
        "file_search_call": {"queries", "results"},
        "image_generation_call": {"revised_prompt", "result"},
    }.items()
}
# The call items whose `name` is the tool's (scanned, never rewritten: a client matches it).
_NAMED_ITEMS = frozenset({"function_call", "custom_tool_call", "mcp_call", "mcp_approval_request"})


def read_response_item(item: Any, fn: TextFn, is_json: bool = False) -> Any:
    """One item of a Responses `input` or `output` list (`is_json`: its message text is
    JSON the client parses): its texts, the name of the tool a call called, and every
    string of a key the gateway does not know; an item of a type it does not know is
    scanned whole but for its ids."""
    if not isinstance(item, Mapping):
        return rewrite_json(item, fn)
    kind = item.get("type")
    if kind is None:
        kind = "message"  # a request's message may leave its type out
    if not isinstance(kind, str) or kind not in _ITEM_TEXTS:
        return rewrite_unknown_keys(_ITEM_IDS, item, fn)  # an upstream's own item type
    item = rewrite_unknown_keys(_ITEM_KEYS[kind], item, fn)
    if kind in _NAMED_ITEMS:
        item = _CALLED_NAME(item, fn)
    elif kind == "message" and isinstance(item.get("content"), list):
        item = changed(item, {"content": unknown_part_keys(item["content"], fn)})
    elif kind == "reasoning":  # its summary and content are parts, as a message's
        item = changed(
            item,
            {
                name: unknown_part_keys(item[name], fn)
                for name in ("summary", "content")
                if isinstance(item.get(name), list)
            },
        )
    readers = _JSON_MESSAGE if is_json and kind == "message" else _ITEM_TEXTS[kind]
    for read in readers:
        item = read(item, fn)
    return item
