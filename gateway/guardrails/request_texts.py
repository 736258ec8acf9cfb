"""The texts of a request, per endpoint (texts.py maps them): `rewrite_request`. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.guardrails.json_texts import rewrite_json
from gateway.guardrails.message_texts import (
    Reader,
    TextFn,
    changed,
    each_item,
    read_content,
    read_message,
    read_present,
    read_request_part,
    read_strings,
    read_text,
    scan,
)
from gateway.guardrails.plain_chat import rewrite_plain_request
from gateway.guardrails.request_fields import (
    KNOWN_FIELDS,
    TOOL_KEYS,
    rewrite_unknown_fields,
    rewrite_unknown_keys,
)
from gateway.guardrails.response_items import read_response_item

# Responses tools whose whole definition is the model's text (name, schema, grammar).
_DEFINED_TOOLS = frozenset({"function", "custom"})


def _prompt_texts(value: Any, fn: TextFn) -> Any:
    """Completions `prompt`, embeddings `input`: `read_strings`, but ids and lists of them are
    token arrays, left to token_ids.py (which refuses anything in them but an id)."""
    if isinstance(value, list):
        return each_item(
            value, fn, lambda item: item if isinstance(item, int | list) else read_text(item, fn)
        )
    return read_text(value, fn)


def _tools(value: Any, fn: TextFn) -> Any:
    """Tool definitions: a function's or custom tool's every text (its name, description,
    parameters' schema, grammar: json_texts.py); a web search's user location."""

    def tool(item: Any) -> Any:
        if not isinstance(item, Mapping):
            return rewrite_json(item, fn)
        if isinstance(item.get("function"), Mapping):  # chat: {type, function: {...}}
            item = rewrite_unknown_keys(TOOL_KEYS, item, fn)
            return changed(item, {"function": rewrite_json(item["function"], fn)})
        if isinstance(item.get("custom"), Mapping):  # chat: {type: custom, custom: {...}}
            item = rewrite_unknown_keys(TOOL_KEYS, item, fn)
            return changed(item, {"custom": rewrite_json(item["custom"], fn)})
        if item.get("type") in _DEFINED_TOOLS:  # Responses: the definition inline
            return rewrite_json(item, fn)
        # Responses' built-in tools: ids, URLs and an MCP server's headers are the
        # upstream's business, not the model's text; an MCP server's description is the
        # model's to read (probe p16).
        return changed(
            item,
            {
                "description": read_text(item.get("description"), fn),
                "server_description": read_text(item.get("server_description"), fn),
                "user_location": rewrite_json(item.get("user_location"), fn),
            },
        )

    return each_item(value, fn, tool)


def _choice_of_tool(value: Any, fn: TextFn) -> Any:
    """`tool_choice` (or chat's legacy `function_call`): the tool it names, which a rule
    rewrote in the tool's definition too (`"auto"` and the like are not texts)."""
    return rewrite_json(value, fn) if isinstance(value, Mapping) else value


def _prediction(value: Any, fn: TextFn) -> Any:
    if not isinstance(value, Mapping):
        return rewrite_json(value, fn)
    return changed(value, {"content": read_content(value.get("content"), fn)})


def _response_format(value: Any, fn: TextFn) -> Any:
    if not isinstance(value, Mapping):
        return rewrite_json(value, fn)
    return changed(value, {"json_schema": rewrite_json(value.get("json_schema"), fn)})


def _text_options(value: Any, fn: TextFn) -> Any:
    """Responses `text`: its `format` (a JSON schema's texts)."""
    if not isinstance(value, Mapping):
        return rewrite_json(value, fn)
    return changed(value, {"format": rewrite_json(value.get("format"), fn)})


def _prompt(value: Any, fn: TextFn) -> Any:
    """Responses `prompt`: a stored prompt's variables, strings or input parts."""
    if not isinstance(value, Mapping):
        return rewrite_json(value, fn)
    variables = value.get("variables")
    if not isinstance(variables, Mapping):
        return changed(value, {"variables": rewrite_json(variables, fn)})
    updates = {
        name: scan(v, fn) if isinstance(v, str) else read_request_part(v, fn)
        for name, v in variables.items()
    }
    return changed(value, {"variables": changed(variables, updates)})


def rewrite_request(endpoint: str, body: Mapping[str, Any], fn: TextFn) -> Mapping[str, Any]:
    """Every text of the fields `endpoint` knows, then every string of those it does
    not (request_fields.py): the upstream gets them as written. A plain chat request
    is read in one pass (plain_chat.py), with the same result."""
    if endpoint == "chat":
        plain = rewrite_plain_request(_PLAIN_CHAT_FIELDS, body, fn)
        if plain is not None:
            return plain
    return walk_request(endpoint, body, fn)


def walk_request(endpoint: str, body: Mapping[str, Any], fn: TextFn) -> Mapping[str, Any]:
    """`rewrite_request` field by field, whatever the body's shape."""
    return rewrite_unknown_fields(endpoint, _known_fields(endpoint, body, fn), fn)


def _known_fields(endpoint: str, body: Mapping[str, Any], fn: TextFn) -> Mapping[str, Any]:
    if endpoint == "chat":
        messages = each_item(body.get("messages"), fn, lambda m: read_message(m, fn))
        return changed(body, read_present(body, _CHAT_FIELDS, fn, {"messages": messages}))
    if endpoint == "completions":
        return changed(
            body,
            {
                "prompt": _prompt_texts(body.get("prompt"), fn),
                "suffix": read_text(body.get("suffix"), fn),
                "stop": read_strings(body.get("stop"), fn),
            },
        )
    if endpoint == "embeddings":
        return changed(body, {"input": _prompt_texts(body.get("input"), fn)})
    if endpoint == "responses":
        raw_input = body.get("input")
        return changed(
            body,
            {
                "instructions": read_text(body.get("instructions"), fn),
                "input": (
                    scan(raw_input, fn)
                    if isinstance(raw_input, str)
                    else each_item(raw_input, fn, lambda item: read_response_item(item, fn))
                ),
                "tools": _tools(body.get("tools"), fn),
                "tool_choice": _choice_of_tool(body.get("tool_choice"), fn),
                "text": _text_options(body.get("text"), fn),
                "prompt": _prompt(body.get("prompt"), fn),
            },
        )
    return body


def _functions(value: Any, fn: TextFn) -> Any:
    return each_item(value, fn, lambda f: rewrite_json(f, fn))


# A chat request's fields besides its messages, and how each is read.
_CHAT_FIELDS: tuple[tuple[str, Reader], ...] = (
    ("tools", _tools),
    ("functions", _functions),
    ("tool_choice", _choice_of_tool),
    ("function_call", _choice_of_tool),
    ("prediction", _prediction),
    ("response_format", _response_format),
    ("stop", read_strings),
    ("web_search_options", rewrite_json),
)
# A plain chat request's fields: its messages, and the known fields that hold no text.
_PLAIN_CHAT_FIELDS = KNOWN_FIELDS["chat"] - {name for name, _ in _CHAT_FIELDS}
