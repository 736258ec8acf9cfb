"""Where the texts are: every text a request carries, and every text an answer
carries, per endpoint, rewritten through one function.

`rewrite_request(endpoint, body, fn)` and `rewrite_answer(endpoint, payload, fn)`
call `fn` on each text and return the body with the texts `fn` changed; parts
`fn` left alone are shared, not copied (a clean request copies nothing). Pure.

Request texts: chat messages (string content and text parts, tool-call arguments,
legacy function calls), tool and function descriptions (the parameter schemas'
descriptions included); completions `prompt` and `suffix`; embeddings `input`;
Responses `instructions`, `input` (messages, their text parts, function-call
arguments and outputs) and tool descriptions. Answer texts: chat message content,
refusal and tool-call arguments; completions text; Responses output text and
function-call arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

TextFn = Callable[[str], str]
_TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})


def _changed(original: Mapping[str, Any], updates: dict[str, Any]) -> Mapping[str, Any]:
    changes = {k: v for k, v in updates.items() if v is not original.get(k)}
    return {**original, **changes} if changes else original


def _items(value: Any, each: Callable[[Any], Any]) -> Any:
    if not isinstance(value, list):
        return value
    out = [each(item) for item in value]
    return out if any(a is not b for a, b in zip(out, value, strict=True)) else value


def _text(value: Any, fn: TextFn) -> Any:
    return fn(value) if isinstance(value, str) else value


def _strings(value: Any, fn: TextFn) -> Any:
    """A string or a list of strings (token arrays are left alone)."""
    if isinstance(value, str):
        return fn(value)
    return _items(value, lambda item: fn(item) if isinstance(item, str) else item)


def _content(value: Any, fn: TextFn) -> Any:
    """Message content: a string, or parts of which the text ones are scanned."""
    if isinstance(value, str):
        return fn(value)

    def part(item: Any) -> Any:
        if isinstance(item, Mapping) and item.get("type") in _TEXT_PART_TYPES:
            return _changed(item, {"text": _text(item.get("text"), fn)})
        return item

    return _items(value, part)


def _function(value: Any, fn: TextFn) -> Any:
    if not isinstance(value, Mapping):
        return value
    return _changed(value, {"arguments": _text(value.get("arguments"), fn)})


def _tool_calls(value: Any, fn: TextFn) -> Any:
    return _items(
        value,
        lambda call: (
            _changed(call, {"function": _function(call.get("function"), fn)})
            if isinstance(call, Mapping)
            else call
        ),
    )


def _schema_descriptions(schema: Any, fn: TextFn, depth: int = 0) -> Any:
    """Every `description` in a JSON schema (tool parameters), nested ones too."""
    if depth > 32:
        return schema
    if isinstance(schema, list):
        return _items(schema, lambda item: _schema_descriptions(item, fn, depth + 1))
    if not isinstance(schema, Mapping):
        return schema
    updates = {
        key: (
            _text(value, fn) if key == "description" else _schema_descriptions(value, fn, depth + 1)
        )
        for key, value in schema.items()
        if isinstance(value, Mapping | list) or key == "description"
    }
    return _changed(schema, updates)


def _function_definition(value: Any, fn: TextFn) -> Any:
    if not isinstance(value, Mapping):
        return value
    return _changed(
        value,
        {
            "description": _text(value.get("description"), fn),
            "parameters": _schema_descriptions(value.get("parameters"), fn),
        },
    )


def _tools(value: Any, fn: TextFn) -> Any:
    def tool(item: Any) -> Any:
        if not isinstance(item, Mapping):
            return item
        if isinstance(item.get("function"), Mapping):  # chat: {type, function: {...}}
            return _changed(item, {"function": _function_definition(item["function"], fn)})
        return _function_definition(item, fn)  # Responses: the definition inline

    return _items(value, tool)


def _chat_message(message: Any, fn: TextFn) -> Any:
    if not isinstance(message, Mapping):
        return message
    return _changed(
        message,
        {
            "content": _content(message.get("content"), fn),
            "refusal": _text(message.get("refusal"), fn),
            "tool_calls": _tool_calls(message.get("tool_calls"), fn),
            "function_call": _function(message.get("function_call"), fn),
        },
    )


def _response_item(item: Any, fn: TextFn) -> Any:
    """One item of a Responses `input` or `output` list."""
    if not isinstance(item, Mapping):
        return item
    kind = item.get("type")
    if kind == "function_call":
        return _changed(item, {"arguments": _text(item.get("arguments"), fn)})
    if kind == "function_call_output":
        return _changed(item, {"output": _content(item.get("output"), fn)})
    return _changed(item, {"content": _content(item.get("content"), fn)})


def rewrite_request(endpoint: str, body: Mapping[str, Any], fn: TextFn) -> Mapping[str, Any]:
    if endpoint == "chat":
        return _changed(
            body,
            {
                "messages": _items(body.get("messages"), lambda m: _chat_message(m, fn)),
                "tools": _tools(body.get("tools"), fn),
                "functions": _items(body.get("functions"), lambda f: _function_definition(f, fn)),
            },
        )
    if endpoint == "completions":
        return _changed(
            body,
            {"prompt": _strings(body.get("prompt"), fn), "suffix": _text(body.get("suffix"), fn)},
        )
    if endpoint == "embeddings":
        return _changed(body, {"input": _strings(body.get("input"), fn)})
    if endpoint == "responses":
        raw_input = body.get("input")
        return _changed(
            body,
            {
                "instructions": _text(body.get("instructions"), fn),
                "input": (
                    fn(raw_input)
                    if isinstance(raw_input, str)
                    else _items(raw_input, lambda item: _response_item(item, fn))
                ),
                "tools": _tools(body.get("tools"), fn),
            },
        )
    return body


def rewrite_answer(endpoint: str, payload: Mapping[str, Any], fn: TextFn) -> Mapping[str, Any]:
    """A whole answer (or a Responses `response` object)."""
    if endpoint in ("chat", "completions"):

        def choice(item: Any) -> Any:
            if not isinstance(item, Mapping):
                return item
            return _changed(
                item,
                {
                    "message": _chat_message(item.get("message"), fn),
                    "text": _text(item.get("text"), fn),
                },
            )

        return _changed(payload, {"choices": _items(payload.get("choices"), choice)})
    if endpoint == "responses":
        return _changed(
            payload,
            {
                "output": _items(payload.get("output"), lambda item: _response_item(item, fn)),
                "output_text": _text(payload.get("output_text"), fn),
            },
        )
    return payload


def rewrite_response_event(event: Mapping[str, Any], fn: TextFn) -> Mapping[str, Any]:
    """A Responses stream event that repeats whole texts (`*.done`, `response.completed`)."""
    return _changed(
        event,
        {
            "text": _text(event.get("text"), fn),
            "arguments": _text(event.get("arguments"), fn),
            "part": _content([event["part"]], fn)[0]
            if isinstance(event.get("part"), Mapping)
            else event.get("part"),
            "item": _response_item(event.get("item"), fn),
            "response": (
                rewrite_answer("responses", event["response"], fn)
                if isinstance(event.get("response"), Mapping)
                else event.get("response")
            ),
        },
    )
