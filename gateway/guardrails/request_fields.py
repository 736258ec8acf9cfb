"""The top-level request fields the guardrails know, per endpoint: those texts.py reads
and those that hold no text (settings, identifiers). Any other field goes upstream as
the caller wrote it (an OpenAI-compatible server such as vLLM reads its own extra
fields: `guided_json`, `chat_template_kwargs`, ...), so its name and every string and key
in it are scanned (json_texts.py); so is every key the guardrails do not know in a
message, a content part, a chat tool, `stream_options` (a message's `thinking`, a part's
`cache_control`) or a Responses input item of a type they do not know. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.guardrails.json_texts import MAPPING, TextFn, check_name, rewrite_json

_STREAMING = ("model", "stream", "stream_options", "user", "metadata", "service_tier")
_CAPS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
_SAMPLING = (
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "seed",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "store",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
)
# Per endpoint: the fields texts.py reads, then those without text.
KNOWN_FIELDS: dict[str, frozenset[str]] = {
    "chat": frozenset(
        {
            *("messages", "tools", "functions", "prediction", "response_format", "stop"),
            *("tool_choice", "function_call", "web_search_options"),
            *(*_STREAMING, *_CAPS, *_SAMPLING),
            *("parallel_tool_calls", "reasoning_effort", "modalities", "audio", "verbosity"),
        }
    ),
    "completions": frozenset(
        {"prompt", "suffix", "stop", *_STREAMING, *_CAPS, *_SAMPLING, "best_of", "echo"}
    ),
    "embeddings": frozenset({"input", *_STREAMING, "encoding_format", "dimensions"}),
    "responses": frozenset(
        {
            *("instructions", "input", "tools", "text", "prompt", "tool_choice"),
            *(*_STREAMING, *_CAPS, *_SAMPLING),
            *("parallel_tool_calls", "previous_response_id", "background", "conversation"),
            *("reasoning", "include", "truncation", "max_tool_calls"),
        }
    ),
}


# The keys the guardrails know in the objects a request nests (texts.py reads them, or
# they hold no text); any other key's strings are scanned, as a top-level field's are.
MESSAGE_KEYS = frozenset(
    {"role", "content", "name", "refusal", "reasoning_content", "reasoning", "audio"}
    | {"annotations", "tool_calls", "function_call", "tool_call_id"}
)
RESPONSES_MESSAGE_KEYS = frozenset({"type", "role", "content", "id", "status"})
PART_KEYS = frozenset(
    {"type", "text", "annotations", "logprobs", "refusal", "image_url", "input_audio", "file"}
    | {"file_id", "file_data", "file_url", "filename", "detail"}
)
TOOL_KEYS = frozenset({"type", "function", "custom"})  # a chat tool
# A chat answer's `audio`: its id, base64 `data` and expiry hold no text; the transcript
# is read as a text (any other key is scanned whole).
AUDIO_KEYS = frozenset({"id", "data", "expires_at", "transcript"})
# A chat tool call (a request's or an answer's), its function, its custom tool's input.
TOOL_CALL_KEYS = frozenset({"id", "type", "index", "function", "custom"})
FUNCTION_CALL_KEYS = frozenset({"name", "arguments"})
CUSTOM_CALL_KEYS = frozenset({"name", "input"})
# An answer's choice (chat or completions; texts.py reads `message` and `text`).
CHOICE_KEYS = frozenset({"index", "message", "text", "finish_reason", "logprobs"})
STREAM_OPTIONS_KEYS = frozenset({"include_usage", "include_obfuscation"})
# An answer's or a stream event's top-level fields that hold no text: ids, names of the
# model and the object, counts (`usage`, when it holds numbers only: answer_texts.py) and
# OpenAI's `obfuscation`, random padding the upstream draws, not text the model wrote.
_ANSWER_STRUCTURE = {"id", "object", "created", "model", "system_fingerprint", "service_tier"}
_ANSWER_STRUCTURE |= {"usage", "obfuscation"}
_ANSWER_STRUCTURE |= {"type", "code", "param", "error_type"}  # an error's (vLLM's, TGI's)
# A chat or completions event's; any other top-level field (Perplexity's `citations`,
# `search_results`, a provider's own) is scanned whole, as an unknown request field is.
CHUNK_KEYS = frozenset({*_ANSWER_STRUCTURE, "choices"})
# Per endpoint, a whole answer's (the error fields are read by `rewrite_error`). A
# Responses object also repeats the request's settings (`instructions`, `tools`, ...):
# the caller's own text, under the input rules already.
ANSWER_KEYS: dict[str, frozenset[str]] = {
    "chat": frozenset({*CHUNK_KEYS, "error", "message", "detail"}),
    "completions": frozenset({*CHUNK_KEYS, "error", "message", "detail"}),
    "responses": frozenset(
        {
            *("id", "object", "created_at", "completed_at", "status", "model", "output"),
            *("output_text", "error", "usage", "incomplete_details", "billing"),
            *KNOWN_FIELDS["responses"],
        }
    ),
}


def rewrite_unknown_keys(known: frozenset[str], value: Any, fn: TextFn) -> Any:
    """`value` (a mapping) with the texts of the keys `known` lacks rewritten, each such
    key checked as a name (the same object when none changed; one C-level set check when
    it has none)."""
    if not isinstance(value, MAPPING) or known.issuperset(value):
        return value
    updates = {}
    for name, item in value.items():
        if name not in known:
            check_name(name, fn)
            checked = rewrite_json(item, fn)
            if checked is not item:
                updates[name] = checked
    return {**value, **updates} if updates else value


def rewrite_unknown_fields(endpoint: str, body: Mapping[str, Any], fn: TextFn) -> Mapping[str, Any]:
    """`body` with the texts of the fields `endpoint` does not know rewritten, and of
    `stream_options`' keys it does not know (the same object when none changed; most
    bodies have no such field)."""
    known = KNOWN_FIELDS.get(endpoint)
    if known is None:
        return body
    checked: Mapping[str, Any] = rewrite_unknown_keys(known, body, fn)
    options = body.get("stream_options")
    if isinstance(options, MAPPING):
        rewritten = rewrite_unknown_keys(STREAM_OPTIONS_KEYS, options, fn)
        if rewritten is not options:
            checked = {**checked, "stream_options": rewritten}
    return checked
