"""The top-level request fields the guardrails know, per endpoint: those texts.py reads
and those that hold no text (settings, identifiers). Any other field goes upstream as
the caller wrote it (an OpenAI-compatible server such as vLLM reads its own extra
fields: `guided_json`, `chat_template_kwargs`, ...), so every string in it is scanned
(json_texts.py). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.guardrails.json_texts import TextFn, rewrite_json

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


def rewrite_unknown_fields(endpoint: str, body: Mapping[str, Any], fn: TextFn) -> Mapping[str, Any]:
    """`body` with the texts of the fields `endpoint` does not know rewritten (the same
    object when none changed; most bodies have no such field)."""
    known = KNOWN_FIELDS.get(endpoint)
    if known is None or known.issuperset(body):  # one C-level pass over the names
        return body
    updates = {}
    for name, value in body.items():
        if name not in known:
            checked = rewrite_json(value, fn)
            if checked is not value:
                updates[name] = checked
    return {**body, **updates} if updates else body
