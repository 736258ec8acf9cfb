"""The fields of a litellm-translated answer a client gets: OpenAI's wire format. Pure.

litellm's answers carry fields of its own beside OpenAI's: `thinking_blocks` (Anthropic's
thinking text and its signature), `provider_specific_fields` (on the answer, each
choice, message and delta: thinking blocks again, citations, web search results, tool
results), `reasoning_items`, Gemini's `vertex_ai_*` metadata (grounding queries,
citations), a tool call's thought signature. Output guardrails read the texts of
OpenAI's fields, so an upstream text in any other would leave unscanned; each level
keeps OpenAI's fields by name, and a field a later litellm adds is dropped until it is
listed here.

Kept beyond OpenAI's: `reasoning_content`, the de-facto field for a model's reasoning
(scanned by the output rules; Anthropic's thinking arrives there), and a message's
`images` (Gemini's generated pictures as data URLs, as OpenRouter sends them: image
data, no text). A legacy completion's choice keeps OpenAI's four fields only: litellm
puts the thinking in its `reasoning_content`, which no output rule reads for
completions. Embeddings are numbers and go as they come.
"""

from __future__ import annotations

from typing import Any

from gateway.providers.base import Endpoint

Body = dict[str, Any]

_ANSWER = frozenset(
    {"id", "object", "created", "model", "choices", "usage", "system_fingerprint", "service_tier"}
)
# A chunk may be litellm's error event, which ends the stream (adapter's `_SseRelay`).
_CHUNK = _ANSWER | {"error"}
_CHOICE = frozenset({"index", "message", "finish_reason", "logprobs"})
_STREAM_CHOICE = frozenset({"index", "delta", "finish_reason", "logprobs"})
_MESSAGE = frozenset(
    {"role", "content", "refusal", "tool_calls", "function_call", "audio", "annotations",
     "reasoning_content", "images"}
)  # fmt: skip
_TOOL_CALL = frozenset({"index", "id", "type", "function", "custom"})
_COMPLETION_CHOICE = frozenset({"index", "text", "logprobs", "finish_reason"})


def openai_fields(endpoint: Endpoint, body: Body, *, is_chunk: bool) -> Body:
    """`body` (litellm's dump of an answer or a stream chunk) with OpenAI's fields only.

    Trims `body` in place (it is a fresh dump) and returns it; values it keeps are not
    copied, so a chunk costs a few dict lookups per level.
    """
    if endpoint == "embeddings":
        return body
    _keep(body, _CHUNK if is_chunk else _ANSWER)
    choices = body.get("choices")
    if not isinstance(choices, list):
        return body
    if endpoint == "completions":
        for choice in choices:
            _keep(choice, _COMPLETION_CHOICE)
        return body
    inner = "delta" if is_chunk else "message"
    for choice in choices:
        _keep(choice, _STREAM_CHOICE if is_chunk else _CHOICE)
        message = choice.get(inner) if isinstance(choice, dict) else None
        if isinstance(message, dict):
            _keep(message, _MESSAGE)
            for call in message.get("tool_calls") or ():
                _keep(call, _TOOL_CALL)
    return body


def _keep(value: object, names: frozenset[str]) -> None:
    """Delete the keys of dict `value` not in `names` (anything else: left alone)."""
    if isinstance(value, dict) and not value.keys() <= names:
        for key in value.keys() - names:
            del value[key]
