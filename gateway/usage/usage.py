"""What a request consumed: read from the upstream's report, or counted locally.

Pure functions over parsed JSON payloads; the tokenizer is the only helper.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.limits.token_count import count_prompt, count_text


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0  # of the input: read from the provider's prompt cache
    is_estimated: bool = False  # counted by the gateway, not reported by the upstream
    cache_write_tokens: int = 0  # of the input: written to the prompt cache (Anthropic)
    reasoning_tokens: int = 0  # of the output: hidden reasoning (o-series, Responses)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


def usage_from_report(usage: Any) -> Usage | None:
    """Read an upstream usage object (chat/completions/embeddings or Responses shape)."""
    if not isinstance(usage, Mapping):
        return None
    if "input_tokens" in usage:  # Responses API
        input_key, output_key = "input_tokens", "output_tokens"
    elif "prompt_tokens" in usage:
        input_key, output_key = "prompt_tokens", "completion_tokens"
    else:
        return None
    return Usage(
        _int(usage.get(input_key)),
        _int(usage.get(output_key)),
        _detail(usage, f"{input_key}_details", "cached_tokens"),
        cache_write_tokens=_int(usage.get("cache_creation_input_tokens")),
        reasoning_tokens=_detail(usage, f"{output_key}_details", "reasoning_tokens"),
    )


def _detail(usage: Mapping[str, Any], details_key: str, name: str) -> int:
    details = usage.get(details_key)
    return _int(details.get(name)) if isinstance(details, Mapping) else 0


def output_text(endpoint: str, payload: Mapping[str, Any]) -> str:
    """The generated text of a whole response or of one stream chunk (deltas included)."""
    if endpoint == "responses":
        return "".join(_response_texts(payload))
    parts: list[str] = []
    for choice in payload.get("choices") or ():
        if not isinstance(choice, Mapping):
            continue
        text = choice.get("text")
        if isinstance(text, str):
            parts.append(text)
        for key in ("message", "delta"):
            message = choice.get(key)
            if isinstance(message, Mapping):
                parts.extend(_message_texts(message))
    return "".join(parts)


def _message_texts(message: Mapping[str, Any]) -> Iterable[str]:
    content = message.get("content")
    if isinstance(content, str):
        yield content
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            yield str(function.get("name") or "")
            yield str(function.get("arguments") or "")


def _response_texts(payload: Mapping[str, Any]) -> Iterable[str]:
    delta = payload.get("delta")
    if isinstance(delta, str):  # a response.output_text.delta event
        yield delta
        return
    for item in payload.get("output") or ():
        for part in item.get("content") or () if isinstance(item, Mapping) else ():
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                yield part["text"]


def estimate_usage(endpoint: str, body: Mapping[str, Any], model: str, generated: str) -> Usage:
    """Count with the local tokenizer when the upstream reported nothing."""
    return Usage(
        count_prompt(endpoint, body, model),
        0 if endpoint == "embeddings" else count_text(generated, model),
        0,
        is_estimated=True,
    )
