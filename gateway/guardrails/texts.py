"""Where the texts are: every text a request carries, and every text an answer
carries, per endpoint, rewritten through one function.

`rewrite_request(endpoint, body, fn)` and `rewrite_answer(endpoint, payload, fn)`
call `fn` on each text and return the body with the spans `fn` names replaced; parts
`fn` left alone are shared, not copied (a clean request copies nothing). Pure.

Request texts: chat messages (string content and text parts, each alone and joined as
an upstream joins them: joined_parts.py; file parts' `filename`,
`name`, tool-call arguments and custom tool-call input, legacy function calls, the
names of the tools called), `prediction`, `stop`, tool and function definitions whole
(names, descriptions, parameter schemas, custom tools' grammars: json_texts.py),
`tool_choice`, `response_format`'s JSON schema, `web_search_options`; completions
`prompt`, `suffix` and `stop`; embeddings `input`; Responses `instructions`, `input`
(messages and their text parts, and the texts of each item type `_ITEM_TEXTS` lists:
tool calls and their outputs, reasoning, MCP calls, code interpreter code and logs,
shell commands and output, patches, ...), `text.format`'s schema, `prompt.variables`,
function and custom tools whole, the other tools' descriptions and user locations; and,
on every endpoint, every string of a top-level field it does not know
(request_fields.py). A value where a text (or a message, part, call, ...) belongs that
is not of that shape, an object where a string was due, is scanned whole, every string
and key in it (json_texts.rewrite_json), never passed on unread; so is a Responses input
item of a type this gateway does not know, but for its ids. Not scanned: identifiers
(`metadata`, `user`, ids, model names), files' data (base64 of any format: decoding
files is not a text scan), URLs of images and files, MCP servers' settings.

Answer texts: chat message content, refusal, reasoning (`reasoning_content`,
`reasoning`), the audio transcript, URL citations, tool-call arguments and custom
tool-call input, and every string of the keys the gateway does not know in a choice,
its message and its content parts (`thinking`, `reasoning_details`, ...); completions
text; Responses output text, refusals, citations and the
texts of each output item type `_ITEM_TEXTS` lists (as for the request). A choice (or a
text part) whose text a rule rewrote loses its `logprobs`: the tokens spell the text.
An upstream's error is an answer's text too (`rewrite_error`): it may quote the prompt.

Arguments are JSON text: `fn` sees them as their reader does, every escape decoded, and
a redaction is written into the text as it came (json_escapes.py), so the arguments stay
valid JSON with the same value, redacted (a bare value it touches, such as a number,
becomes the marker as a string: json_layout.py), and clean arguments are never changed.
An answer whose request asked for JSON (`asks_for_json`) has its message text read the
same way: its client parses it too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gateway.guardrails.joined_parts import rewrite_joined_parts
from gateway.guardrails.json_escapes import Escaped
from gateway.guardrails.json_layout import layout_of_json, numbers_read
from gateway.guardrails.json_texts import check_name, rewrite_json
from gateway.guardrails.request_fields import (
    CHOICE_KEYS,
    CUSTOM_CALL_KEYS,
    FUNCTION_CALL_KEYS,
    MESSAGE_KEYS,
    PART_KEYS,
    RESPONSES_MESSAGE_KEYS,
    TOOL_CALL_KEYS,
    TOOL_KEYS,
    rewrite_unknown_fields,
    rewrite_unknown_keys,
)
from gateway.guardrails.scanner import Redaction, apply_redactions
from gateway.guardrails.walk_cost import ENTRY_COST, layout_cost, spend_reading

# Called on each text: the spans to replace in it, and with what (none: leave it).
TextFn = Callable[[str], Sequence[Redaction]]
_JSON_PART_TYPES = frozenset({"text", "output_text"})  # a message's answer text
_JSON_FORMATS = frozenset({"json_object", "json_schema"})
# Responses tools whose whole definition is the model's text (name, schema, grammar).
_DEFINED_TOOLS = frozenset({"function", "custom"})


def _changed(original: Mapping[str, Any], updates: dict[str, Any]) -> Mapping[str, Any]:
    changes = {k: v for k, v in updates.items() if v is not original.get(k)}
    return {**original, **changes} if changes else original


def _items(value: Any, fn: TextFn, each: Callable[[Any], Any]) -> Any:
    """`each` on every item of a list (charged to `fn`'s inline budget: walk_cost.py)."""
    if not isinstance(value, list):
        return rewrite_json(value, fn)
    spend = getattr(fn, "spend", None)
    if spend is not None:
        spend(len(value) * ENTRY_COST)
    out = [each(item) for item in value]
    return out if any(a is not b for a, b in zip(out, value, strict=True)) else value


def _scan(text: str, fn: TextFn) -> str:
    """`text` with what `fn` says to replace in it replaced (the same object when none)."""
    spans = fn(text)
    return apply_redactions(text, spans) if spans else text


def _text(value: Any, fn: TextFn) -> Any:
    """A text; anything else there (an object, an array) is scanned whole, every string
    and key in it, as an unknown field is (json_texts.py): never passed on unread."""
    return _scan(value, fn) if isinstance(value, str) else rewrite_json(value, fn)


def _strings(value: Any, fn: TextFn) -> Any:
    """A string or a list of strings (anything else in it: `_text`)."""
    if isinstance(value, list):
        return _items(value, fn, lambda item: _text(item, fn))
    return _text(value, fn)


def _prompt_texts(value: Any, fn: TextFn) -> Any:
    """Completions `prompt`, embeddings `input`: `_strings`, but ids and lists of them are
    token arrays, left to token_ids.py (which refuses anything in them but an id)."""
    if isinstance(value, list):
        return _items(
            value, fn, lambda item: item if isinstance(item, int | list) else _text(item, fn)
        )
    return _text(value, fn)


def _annotation(value: Any, fn: TextFn) -> Any:
    """A URL citation (chat: under `url_citation`; Responses: inline)."""
    if not isinstance(value, Mapping):
        return rewrite_json(value, fn)
    citation = value.get("url_citation")
    if isinstance(citation, Mapping):
        return _changed(value, {"url_citation": _annotation(citation, fn)})
    return _changed(
        value, {"title": _text(value.get("title"), fn), "url": _text(value.get("url"), fn)}
    )


def rewrite_annotations(value: Any, fn: TextFn) -> Any:
    """A list of annotations (a chat message's or delta's URL citations, a text part's)."""
    return _items(value, fn, lambda a: _annotation(a, fn))


def _part(item: Any, fn: TextFn, is_json: bool = False) -> Any:
    """A content part; `is_json`: its output text is JSON the client parses."""
    if not isinstance(item, Mapping):
        return _text(item, fn)
    # Each text key is read whatever the part's type (a refusal's `text`, an image's
    # `refusal`): a key the gateway knows is never passed on unread. A file's name is text
    # the model reads (chat: under `file`; Responses: inline); its data is not.
    kind = item.get("type")
    text = item.get("text")
    json_text = is_json and kind in _JSON_PART_TYPES
    updates = {
        "text": _arguments(text, fn) if json_text else _text(text, fn),
        "refusal": _text(item.get("refusal"), fn),
        "filename": _text(item.get("filename"), fn),
        "file": _FILE_NAME(item.get("file"), fn),
        "annotations": rewrite_annotations(item.get("annotations"), fn),
    }
    if updates["text"] is not text and item.get("logprobs"):
        updates["logprobs"] = []  # the tokens spell the text a rule rewrote
    return _changed(item, updates)


def _content(value: Any, fn: TextFn) -> Any:
    """Message content: a string, or parts of which the text ones are scanned, each alone
    and all joined, as an upstream joins them (joined_parts.py)."""
    if isinstance(value, list):
        return rewrite_joined_parts(_items(value, fn, lambda item: _part(item, fn)), fn)
    return _text(value, fn)


def _json_content(value: Any, fn: TextFn) -> Any:
    """Message content the request asked to be JSON: read as arguments are."""
    if isinstance(value, list):
        return _items(value, fn, lambda item: _part(item, fn, is_json=True))
    return _arguments(value, fn)


def _arguments(value: Any, fn: TextFn) -> Any:
    """Arguments (JSON text), scanned as their reader sees them (escapes decoded); a
    redaction is written into the text as written, which is otherwise kept as it came,
    and keeps valid JSON valid (json_layout.py). Arguments sent as an object: `_text`."""
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
    if not isinstance(value, Mapping):
        return rewrite_json(value, fn)
    value = rewrite_unknown_keys(FUNCTION_CALL_KEYS, value, fn)
    return _changed(value, {"arguments": _arguments(value.get("arguments"), fn)})


def _custom_call(value: Any, fn: TextFn) -> Any:
    """A chat custom tool call's `custom`: its free-form `input`."""
    if not isinstance(value, Mapping):
        return rewrite_json(value, fn)
    value = rewrite_unknown_keys(CUSTOM_CALL_KEYS, value, fn)
    return _changed(value, {"input": _text(value.get("input"), fn)})


def _tool_calls(value: Any, fn: TextFn) -> Any:
    """Chat tool calls: a function's arguments, a custom tool's input, and the texts of
    keys the gateway does not know (a provider's own, on the call or its function)."""

    def call(item: Any) -> Any:
        if not isinstance(item, Mapping):
            return rewrite_json(item, fn)
        item = rewrite_unknown_keys(TOOL_CALL_KEYS, item, fn)
        return _changed(
            item,
            {
                "function": _function(item.get("function"), fn),
                "custom": _custom_call(item.get("custom"), fn),
            },
        )

    return _items(value, fn, call)


def _tools(value: Any, fn: TextFn) -> Any:
    """Tool definitions: a function's or custom tool's every text (its name, description,
    parameters' schema, grammar: json_texts.py); a web search's user location."""

    def tool(item: Any) -> Any:
        if not isinstance(item, Mapping):
            return rewrite_json(item, fn)
        if isinstance(item.get("function"), Mapping):  # chat: {type, function: {...}}
            item = rewrite_unknown_keys(TOOL_KEYS, item, fn)
            return _changed(item, {"function": rewrite_json(item["function"], fn)})
        if isinstance(item.get("custom"), Mapping):  # chat: {type: custom, custom: {...}}
            item = rewrite_unknown_keys(TOOL_KEYS, item, fn)
            return _changed(item, {"custom": rewrite_json(item["custom"], fn)})
        if item.get("type") in _DEFINED_TOOLS:  # Responses: the definition inline
            return rewrite_json(item, fn)
        # Responses' built-in tools: ids, URLs and an MCP server's headers are the
        # upstream's business, not the model's text.
        return _changed(
            item,
            {
                "description": _text(item.get("description"), fn),
                "user_location": rewrite_json(item.get("user_location"), fn),
            },
        )

    return _items(value, fn, tool)


def _choice_of_tool(value: Any, fn: TextFn) -> Any:
    """`tool_choice` (or chat's legacy `function_call`): the tool it names, which a rule
    rewrote in the tool's definition too (`"auto"` and the like are not texts)."""
    return rewrite_json(value, fn) if isinstance(value, Mapping) else value


def _name(value: Any, fn: TextFn) -> Any:
    """A name (a tool's): scanned, never rewritten (json_texts.check_name)."""
    return check_name(value, fn) if isinstance(value, str) else rewrite_json(value, fn)


def _called_name(value: Any, fn: TextFn) -> Any:
    """A call's `function` or `custom`: the name of the tool it called, as in `tools`."""
    if not isinstance(value, Mapping):
        return rewrite_json(value, fn)
    return _changed(value, {"name": _name(value.get("name"), fn)})


def _unknown_part_keys(parts: list[Any], fn: TextFn) -> Any:
    """The texts of the keys the gateway does not know in a request's content parts."""
    return _items(parts, fn, lambda part: rewrite_unknown_keys(PART_KEYS, part, fn))


def _request_part(part: Any, fn: TextFn) -> Any:
    """A content part a request sends alone (a prompt's variable): its texts and the
    texts of the keys the gateway does not know."""
    return rewrite_unknown_keys(PART_KEYS, _part(part, fn), fn)


def _whole_message(message: Any, fn: TextFn, is_json: bool = False) -> Any:
    """A chat message (a request's, or an answer's): its texts, the texts of the keys the
    gateway does not know in it and in its parts (`thinking`, `reasoning_details`, a
    provider's own fields): the model reads them, or the client shows them; and the
    names of the tools it called (scanned, never rewritten: json_texts.check_name)."""
    message = _chat_message(message, fn, is_json)
    message = rewrite_unknown_keys(MESSAGE_KEYS, message, fn)
    if isinstance(message, Mapping) and isinstance(message.get("content"), list):
        message = _changed(message, {"content": _unknown_part_keys(message["content"], fn)})
    if not isinstance(message, Mapping) or (
        message.get("tool_calls") is None and message.get("function_call") is None
    ):
        return message  # most messages call no tool

    def call(item: Any) -> Any:
        if not isinstance(item, Mapping):
            return rewrite_json(item, fn)
        return _changed(
            item,
            {
                "function": _called_name(item.get("function"), fn),
                "custom": _called_name(item.get("custom"), fn),
            },
        )

    return _changed(
        message,
        {
            "tool_calls": _items(message.get("tool_calls"), fn, call),
            "function_call": _called_name(message.get("function_call"), fn),
        },
    )


def _audio(value: Any, fn: TextFn) -> Any:
    if not isinstance(value, Mapping):
        return rewrite_json(value, fn)
    return _changed(value, {"transcript": _text(value.get("transcript"), fn)})


def _chat_message(message: Any, fn: TextFn, is_json: bool = False) -> Any:
    if not isinstance(message, Mapping):
        return rewrite_json(message, fn)
    content = _json_content if is_json else _content
    return _changed(
        message,
        {
            "content": content(message.get("content"), fn),
            "name": _text(message.get("name"), fn),
            "refusal": _text(message.get("refusal"), fn),
            "reasoning_content": _text(message.get("reasoning_content"), fn),
            "reasoning": _text(message.get("reasoning"), fn),
            "audio": _audio(message.get("audio"), fn),
            "annotations": rewrite_annotations(message.get("annotations"), fn),
            "tool_calls": _tool_calls(message.get("tool_calls"), fn),
            "function_call": _function(message.get("function_call"), fn),
        },
    )


Reader = Callable[[Any, TextFn], Any]  # the texts of a value: `_text`, `_content`, ...


def _field(name: str, read: Reader) -> Reader:
    """`read` on field `name` of a mapping."""

    def reader(value: Any, fn: TextFn) -> Any:
        if not isinstance(value, Mapping):
            return rewrite_json(value, fn)
        return _changed(value, {name: read(value.get(name), fn)})

    return reader


def _each(read: Reader) -> Reader:
    """`read` on each item of a list."""
    return lambda value, fn: _items(value, fn, lambda item: read(item, fn))


# Where the texts of a Responses `input` or `output` item are, by its type: each reader
# rewrites one field (nested ones through `_field`). Any other type: its `content`.
_ITEM_TEXTS: dict[str, tuple[Reader, ...]] = {
    "function_call": (_field("arguments", _arguments),),
    "function_call_output": (_field("output", _content),),
    "custom_tool_call": (_field("input", _text),),
    "custom_tool_call_output": (_field("output", _content),),
    "reasoning": (_field("summary", _content), _field("content", _content)),
    "mcp_call": (_field("arguments", _arguments), _field("output", _text)),
    "mcp_approval_request": (_field("arguments", _arguments),),
    "code_interpreter_call": (
        _field("code", _text),
        _field("outputs", _each(_field("logs", _text))),
    ),
    "local_shell_call": (_field("action", _field("command", _strings)),),
    "local_shell_call_output": (_field("output", _text),),
    "shell_call": (_field("action", _field("commands", _strings)),),
    "shell_call_output": (
        _field("output", _each(_field("stdout", _text))),
        _field("output", _each(_field("stderr", _text))),
    ),
    "apply_patch_call": (_field("operation", _field("diff", _text)),),
    "web_search_call": (_field("action", _field("query", _text)),),
    "file_search_call": (
        _field("queries", _strings),
        _field("results", _each(_field("text", _text))),
    ),
    "image_generation_call": (_field("revised_prompt", _text),),
}
_OTHER_ITEM = (_field("content", _content),)
# An input item's fields that are structure, not text: an item of a type this gateway
# does not know is otherwise scanned whole (`_unknown_item`).
_ITEM_IDS = frozenset({"type", "id", "call_id", "status"})
# A message item of an answer the request asked to be JSON.
_JSON_MESSAGE: tuple[Reader, ...] = (_field("content", _json_content),)


_ERROR_MESSAGE = _field("message", _text)
_FILE_NAME = _field("filename", _text)
# The name of the tool a Responses call item of a request called, as in `tools`.
_CALLED_NAME = _field("name", _name)
_CALL_ITEMS = frozenset({"function_call", "custom_tool_call"})
_KNOWN_ITEMS = frozenset({"message", *_ITEM_TEXTS})


def _error_object(value: Any, fn: TextFn) -> Any:
    """An `error`: OpenAI's object (its `message`), or a bare string (TGI)."""
    if isinstance(value, str):
        return _scan(value, fn)
    return _ERROR_MESSAGE(value, fn)


def rewrite_error(value: Mapping[str, Any], fn: TextFn) -> Mapping[str, Any]:
    """The texts of an error an upstream relays, in any shape error_fields reads: an
    `error` object's message or an `error` string, a top-level `message` (vLLM's bare
    error object, a Responses `error` event) and FastAPI's `detail` string. Identifiers
    (`type`, `code`, `param`) are not scanned."""
    return _changed(
        value,
        {
            "error": _error_object(value.get("error"), fn),
            "message": _text(value.get("message"), fn),
            "detail": _text(value.get("detail"), fn),
        },
    )


def _response_item(item: Any, fn: TextFn, is_json: bool = False) -> Any:
    """One item of a Responses `input` or `output` list (`is_json`: its message text is
    JSON the client parses)."""
    if not isinstance(item, Mapping):
        return rewrite_json(item, fn)
    kind = item.get("type")
    if is_json and kind == "message":
        readers = _JSON_MESSAGE
    else:
        readers = _ITEM_TEXTS.get(kind, _OTHER_ITEM) if isinstance(kind, str) else _OTHER_ITEM
    for read in readers:
        item = read(item, fn)
    return item


def _prediction(value: Any, fn: TextFn) -> Any:
    if not isinstance(value, Mapping):
        return rewrite_json(value, fn)
    return _changed(value, {"content": _content(value.get("content"), fn)})


def _response_format(value: Any, fn: TextFn) -> Any:
    if not isinstance(value, Mapping):
        return rewrite_json(value, fn)
    return _changed(value, {"json_schema": rewrite_json(value.get("json_schema"), fn)})


def _text_options(value: Any, fn: TextFn) -> Any:
    """Responses `text`: its `format` (a JSON schema's texts)."""
    if not isinstance(value, Mapping):
        return rewrite_json(value, fn)
    return _changed(value, {"format": rewrite_json(value.get("format"), fn)})


def _prompt(value: Any, fn: TextFn) -> Any:
    """Responses `prompt`: a stored prompt's variables, strings or input parts."""
    if not isinstance(value, Mapping):
        return rewrite_json(value, fn)
    variables = value.get("variables")
    if not isinstance(variables, Mapping):
        return _changed(value, {"variables": rewrite_json(variables, fn)})
    updates = {
        name: _scan(v, fn) if isinstance(v, str) else _request_part(v, fn)
        for name, v in variables.items()
    }
    return _changed(value, {"variables": _changed(variables, updates)})


def _input_item(item: Any, fn: TextFn) -> Any:
    """One item of a Responses request's `input`: its texts, a call's tool name, and a
    message's keys (and its parts' keys) the gateway does not know."""
    if not isinstance(item, Mapping):
        return rewrite_json(item, fn)
    kind = item.get("type")
    if kind is not None and not (isinstance(kind, str) and kind in _KNOWN_ITEMS):
        return rewrite_unknown_keys(_ITEM_IDS, item, fn)  # an upstream's own item type
    if kind in _CALL_ITEMS:
        item = _CALLED_NAME(item, fn)
    elif kind in (None, "message"):
        item = rewrite_unknown_keys(RESPONSES_MESSAGE_KEYS, item, fn)
        if isinstance(item.get("content"), list):
            item = _changed(item, {"content": _unknown_part_keys(item["content"], fn)})
    return _response_item(item, fn)


def rewrite_request(endpoint: str, body: Mapping[str, Any], fn: TextFn) -> Mapping[str, Any]:
    """Every text of the fields `endpoint` knows, then every string of those it does
    not (request_fields.py): the upstream gets them as written."""
    return rewrite_unknown_fields(endpoint, _known_fields(endpoint, body, fn), fn)


def _known_fields(endpoint: str, body: Mapping[str, Any], fn: TextFn) -> Mapping[str, Any]:
    if endpoint == "chat":
        return _changed(
            body,
            {
                "messages": _items(body.get("messages"), fn, lambda m: _whole_message(m, fn)),
                "tools": _tools(body.get("tools"), fn),
                "functions": _items(body.get("functions"), fn, lambda f: rewrite_json(f, fn)),
                "tool_choice": _choice_of_tool(body.get("tool_choice"), fn),
                "function_call": _choice_of_tool(body.get("function_call"), fn),
                "prediction": _prediction(body.get("prediction"), fn),
                "response_format": _response_format(body.get("response_format"), fn),
                "stop": _strings(body.get("stop"), fn),
                "web_search_options": rewrite_json(body.get("web_search_options"), fn),
            },
        )
    if endpoint == "completions":
        return _changed(
            body,
            {
                "prompt": _prompt_texts(body.get("prompt"), fn),
                "suffix": _text(body.get("suffix"), fn),
                "stop": _strings(body.get("stop"), fn),
            },
        )
    if endpoint == "embeddings":
        return _changed(body, {"input": _prompt_texts(body.get("input"), fn)})
    if endpoint == "responses":
        raw_input = body.get("input")
        return _changed(
            body,
            {
                "instructions": _text(body.get("instructions"), fn),
                "input": (
                    _scan(raw_input, fn)
                    if isinstance(raw_input, str)
                    else _items(raw_input, fn, lambda item: _input_item(item, fn))
                ),
                "tools": _tools(body.get("tools"), fn),
                "tool_choice": _choice_of_tool(body.get("tool_choice"), fn),
                "text": _text_options(body.get("text"), fn),
                "prompt": _prompt(body.get("prompt"), fn),
            },
        )
    return body


def _choice(item: Any, fn: TextFn, is_json: bool) -> Any:
    """A chat or completions choice; its logprobs go when a rule rewrote its text (the
    tokens spell the text, the top alternatives most of it)."""
    if not isinstance(item, Mapping):
        return rewrite_json(item, fn)
    message = _whole_message(item.get("message"), fn, is_json)
    checked = _changed(item, {"message": message, "text": _text(item.get("text"), fn)})
    # A key of the choice's own that the gateway does not know (vLLM's `stop_reason`, the
    # stop string met) reaches the client too.
    checked = rewrite_unknown_keys(CHOICE_KEYS, checked, fn)
    if checked is not item and checked.get("logprobs") is not None:
        return {**checked, "logprobs": None}
    return checked


def rewrite_answer(
    endpoint: str, payload: Mapping[str, Any], fn: TextFn, *, is_json: bool = False
) -> Mapping[str, Any]:
    """A whole answer (or a Responses `response` object), an error body included (an
    upstream's 200 that is an error object, a failed Responses object). `is_json`: the
    request asked for JSON (`asks_for_json`), so the message text is read as arguments are."""
    if endpoint in ("chat", "completions"):
        answer = _changed(
            payload,
            {"choices": _items(payload.get("choices"), fn, lambda c: _choice(c, fn, is_json))},
        )
        return rewrite_error(answer, fn)
    if endpoint == "responses":
        output = _items(payload.get("output"), fn, lambda item: _response_item(item, fn, is_json))
        output_text = payload.get("output_text")
        return _changed(
            payload,
            {
                "output": output,
                "output_text": _arguments(output_text, fn) if is_json else _text(output_text, fn),
                "error": _error_object(payload.get("error"), fn),
            },
        )
    return rewrite_error(payload, fn)


def rewrite_response_event(
    event: Mapping[str, Any], fn: TextFn, *, is_json: bool = False
) -> Mapping[str, Any]:
    """A Responses stream event that repeats whole texts (`*.done`, `response.completed`),
    or an error (an `error` event's message, a failed `response`'s error). `is_json`: as
    for `rewrite_answer`."""
    text = event.get("text")
    json_text = is_json and event.get("type") == "response.output_text.done"
    checked = _changed(
        event,
        {
            "message": _text(event.get("message"), fn),
            "error": _error_object(event.get("error"), fn),
            "text": _arguments(text, fn) if json_text else _text(text, fn),
            "refusal": _text(event.get("refusal"), fn),
            "arguments": _arguments(event.get("arguments"), fn),
            "input": _text(event.get("input"), fn),
            "code": _text(event.get("code"), fn),
            "annotation": _annotation(event.get("annotation"), fn),
            "part": _part(event.get("part"), fn, is_json),
            "item": _response_item(event.get("item"), fn, is_json),
            "response": (
                rewrite_answer("responses", event["response"], fn, is_json=is_json)
                if isinstance(event.get("response"), Mapping)
                else event.get("response")
            ),
        },
    )
    if checked.get("text") is not text and event.get("logprobs"):
        return {**checked, "logprobs": []}
    return checked


def asks_for_json(endpoint: str, body: Mapping[str, Any]) -> bool:
    """Whether the request asks for its answer's text as JSON (chat `response_format`,
    Responses `text.format`: `json_object` or `json_schema`), which its client parses."""
    if endpoint == "chat":
        options: Any = body.get("response_format")
    elif endpoint == "responses":
        text = body.get("text")
        options = text.get("format") if isinstance(text, Mapping) else None
    else:
        return False
    kind = options.get("type") if isinstance(options, Mapping) else None
    return isinstance(kind, str) and kind in _JSON_FORMATS
