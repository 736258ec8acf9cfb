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

`usage` keeps OpenAI's counts (REFERENCE §1.2's usage object; an embedding's
`prompt_tokens` and `total_tokens`): litellm adds its list-price `cost` (not what the
gateway charges: `x-gateway-cost-usd`), Anthropic's cache spellings and fields of its
own. One of those stays while it is not 0: `cache_creation_input_tokens`, the cache
writes the gateway prices (usage/usage.py reads them there); OpenAI's spelling,
`prompt_tokens_details.cache_write_tokens`, carries the same count. The two detail
objects keep the keys of OpenAI's types (REFERENCE §1.2) that have a value: litellm
sends each it knows, null when it has no count (a whole answer's `audio_tokens`, a
chunk's `accepted_prediction_tokens`); an object left with nothing goes too.

`caller_message` cleans the text of litellm's refusals relayed to the caller (a 400):
litellm's exception names and its settings hints go, and so does what it appends of the
request (`Received Messages=[...]`, `Got={...}`: the conversation, logged nowhere else);
the provider's reason stays.
"""

from __future__ import annotations

import re
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
_USAGE = frozenset(
    {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details",
     "completion_tokens_details"}
)  # fmt: skip
_EMBEDDING_USAGE = frozenset({"prompt_tokens", "total_tokens"})
_PROMPT_DETAILS = frozenset(
    {"cached_tokens", "cache_write_tokens", "audio_tokens", "image_tokens", "text_tokens"}
)
_COMPLETION_DETAILS = frozenset(
    {"reasoning_tokens", "audio_tokens", "accepted_prediction_tokens",
     "rejected_prediction_tokens", "text_tokens"}
)  # fmt: skip
_CACHE_WRITES = "cache_creation_input_tokens"  # billed from (module docstring)

# "litellm.BadRequestError: AnthropicException - litellm.BadRequestError: ", repeated;
# "litellm.RateLimitError: GeminiException - ", "BedrockException BadRequestError - ".
_LITELLM_PREFIXES = re.compile(
    r"^(?:\s*(?:litellm\.\w+:|\w+(?:Exception|Error):(?=\s)"
    r"|\w+(?:Exception|Error)(?:\s+\w+)?\s+-(?=\s)))+\s*"
)
# A sentence ends at `.`, `!` or `?` before whitespace (`litellm.modify_params` holds one).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_LITELLM_HINT = re.compile(r"\blitellm(?:\.|_settings)", re.IGNORECASE)
# Where litellm starts quoting the request back: everything from there on goes.
_REQUEST_ECHO = re.compile(r"(?:\bReceived Messages|\bGot)\s*=", re.DOTALL)


def openai_fields(endpoint: Endpoint, body: Body, *, is_chunk: bool) -> Body:
    """`body` (litellm's dump of an answer or a stream chunk) with OpenAI's fields only.

    Trims `body` in place (it is a fresh dump) and returns it; values it keeps are not
    copied, so a chunk costs a few dict lookups per level.
    """
    if endpoint == "embeddings":
        _keep(body.get("usage"), _EMBEDDING_USAGE)
        return body
    _keep(body, _CHUNK if is_chunk else _ANSWER)
    _keep_usage(body.get("usage"))
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
        if not is_chunk and isinstance(choice, dict):
            # OpenAI's choice always has it (null when not asked for, or not given: a
            # translated provider has none); a client reads `choice.logprobs.content`.
            choice.setdefault("logprobs", None)
        message = choice.get(inner) if isinstance(choice, dict) else None
        if isinstance(message, dict):
            _keep(message, _MESSAGE)
            for call in message.get("tool_calls") or ():
                _keep(call, _TOOL_CALL)
    return body


def caller_message(text: str) -> str:
    """A litellm refusal's text as the caller gets it: without litellm's exception names
    ("litellm.BadRequestError: AnthropicException - "), without its sentences about
    its own settings (`litellm.modify_params`, `litellm_settings::`) and without the
    request it quotes back; "" if nothing is left."""
    text = without_prefixes(text)
    echo = _REQUEST_ECHO.search(text)
    if echo is not None:
        text = text[: echo.start()]
    sentences = _SENTENCE_END.split(text)
    return " ".join(s for s in sentences if not _LITELLM_HINT.search(s)).strip()


def without_prefixes(text: str) -> str:
    """`text` without the exception names litellm puts before an upstream's words."""
    return _LITELLM_PREFIXES.sub("", text, count=1)


def _keep_usage(usage: object) -> None:
    if not isinstance(usage, dict):
        return
    writes = usage.get(_CACHE_WRITES)
    _keep(usage, _USAGE)
    if isinstance(writes, int) and writes > 0:
        usage[_CACHE_WRITES] = writes
    for name, keys in (("prompt_tokens_details", _PROMPT_DETAILS),
                       ("completion_tokens_details", _COMPLETION_DETAILS)):  # fmt: skip
        details = usage.get(name)
        if isinstance(details, dict):
            _keep(details, keys)
            for key in [k for k, v in details.items() if v is None]:
                del details[key]
        if details is None or details == {}:
            usage.pop(name, None)


def _keep(value: object, names: frozenset[str]) -> None:
    """Delete the keys of dict `value` not in `names` (anything else: left alone)."""
    if isinstance(value, dict) and not value.keys() <= names:
        for key in value.keys() - names:
            del value[key]
