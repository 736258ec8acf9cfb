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
    input_audio_tokens: int = 0  # of the input: audio (gpt-4o-audio), priced at its own rate
    output_audio_tokens: int = 0  # of the output: audio
    # The service tier the answer says it was served at (`priority`, `flex`, `default`...),
    # which the table's prices depend on (pricing.charged_prices); None: not said.
    service_tier: str | None = None


# A count above this is no count: the ledger and the limits hold 64-bit integers.
MAX_TOKEN_COUNT = 2**63 - 1
MAX_COUNT_DIGITS = len(str(MAX_TOKEN_COUNT))
# The most one request is charged for, of each kind: what a ledger row's token columns
# (32-bit) hold. Counts are capped here, before pricing, so the ledger's tokens, its
# cost, the cost header and the budgets all see the same numbers.
MAX_CHARGED_TOKENS = 2**31 - 1


def token_count(value: Any) -> int | None:
    """A reported token count, or None when `value` is no count.

    Some upstreams send counts as JSON floats (10.0) or strings ("10"): taken at their
    value. Negative, fractional, non-finite, boolean or non-numeric values are no count.
    """
    if isinstance(value, bool):  # an int to Python, never a count
        return None
    if isinstance(value, float) and value.is_integer():  # False for inf and nan
        value = int(value)
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        # The length check first: int() refuses strings of thousands of digits.
        value = int(value) if len(value) <= MAX_COUNT_DIGITS else None
    return value if isinstance(value, int) and 0 <= value <= MAX_TOKEN_COUNT else None


def _int(value: Any) -> int:
    """A count from a report's details: a detail it cannot read is 0, not a lost report."""
    return token_count(value) or 0


def capped_usage(
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int = 0,
    *,
    is_estimated: bool = False,
    cache_write_tokens: int = 0,
    reasoning_tokens: int = 0,
    input_audio_tokens: int = 0,
    output_audio_tokens: int = 0,
    service_tier: str | None = None,
) -> Usage:
    """A `Usage` whose counts are at most MAX_CHARGED_TOKENS each (see there), its cached
    tokens at most its input (they are part of it: a report saying more would have the
    ledger's `cached_tokens` and its FOCUS lines, priced on the capped count, disagree)."""
    cap = MAX_CHARGED_TOKENS
    input_tokens = min(input_tokens, cap)
    output_tokens = min(output_tokens, cap)
    # Reasoning and audio output are part of the output (OpenAI counts them in it): a
    # report of more is capped at it, so a row never holds 500 reasoning of 5 output.
    return Usage(
        input_tokens,
        output_tokens,
        min(cached_tokens, input_tokens),
        is_estimated,
        min(cache_write_tokens, cap),
        min(reasoning_tokens, output_tokens),
        min(input_audio_tokens, input_tokens),
        min(output_audio_tokens, output_tokens),
        service_tier,
    )


def within_output_cap(usage: Usage, bound: int | None) -> Usage:
    """`usage` with its output at most `bound`, the most the request could generate (the
    output cap sent upstream, times its choices; None: it sent none). A report of more is
    no count an honest upstream makes (probe p14: 2^40 tokens booked against a 4,096 cap
    took a whole month's budget): the bound is charged instead, marked estimated."""
    if bound is None or usage.output_tokens <= bound:
        return usage
    return capped_usage(
        usage.input_tokens,
        bound,
        usage.cached_tokens,
        is_estimated=True,
        cache_write_tokens=usage.cache_write_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        input_audio_tokens=usage.input_audio_tokens,
        output_audio_tokens=usage.output_audio_tokens,
        service_tier=usage.service_tier,
    )


# A tier name longer than this is no tier any table prices: not kept.
MAX_TIER_CHARS = 32


def usage_from_report(usage: Any, service_tier: Any = None) -> Usage | None:
    """Read an upstream usage object (chat/completions/embeddings or Responses shape),
    and the `service_tier` its answer reports (Anthropic's sits in the usage itself).

    None when it is no usable report: not an object, or its input or output count
    missing or unreadable. The caller then counts the tokens itself and marks them
    estimated, as when the upstream reported nothing: charging 0 for a report it
    cannot read would under-charge and claim the 0 is exact.
    """
    if not isinstance(usage, Mapping):
        return None
    if "input_tokens" in usage:  # Responses API
        input_key, output_key = "input_tokens", "output_tokens"
    elif "prompt_tokens" in usage:
        input_key, output_key = "prompt_tokens", "completion_tokens"
    else:
        return None
    input_tokens = token_count(usage.get(input_key))
    if input_tokens is None:
        return None
    output_tokens = _output_count(usage, output_key, input_tokens)
    if output_tokens is None:
        return None
    if service_tier is None:
        service_tier = usage.get("service_tier")
    return capped_usage(
        input_tokens,
        output_tokens,
        _detail(usage, f"{input_key}_details", "cached_tokens"),
        cache_write_tokens=_int(usage.get("cache_creation_input_tokens")),
        reasoning_tokens=_detail(usage, f"{output_key}_details", "reasoning_tokens"),
        input_audio_tokens=_detail(usage, f"{input_key}_details", "audio_tokens"),
        output_audio_tokens=_detail(usage, f"{output_key}_details", "audio_tokens"),
        service_tier=_tier(service_tier),
    )


def answer_tier(payload: Mapping[str, Any]) -> Any:
    """The service tier a whole answer or a stream event reports: its own
    `service_tier`, or a Responses event's `response.service_tier`."""
    tier = payload.get("service_tier")
    response = payload.get("response")
    if tier is None and isinstance(response, Mapping):
        tier = response.get("service_tier")
    return tier


def _tier(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= MAX_TIER_CHARS else None


def _output_count(usage: Mapping[str, Any], output_key: str, input_tokens: int) -> int | None:
    """The report's output count; an absent one is 0 only when the total says so.

    Embeddings upstreams (OpenAI, Ollama) send `prompt_tokens` and `total_tokens` alone,
    the total equal to the prompt. Without that, an absent output count is unknown, not 0.
    """
    value = usage.get(output_key)
    if value is not None:
        return token_count(value)
    return 0 if token_count(usage.get("total_tokens")) == input_tokens else None


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
    """Every text a chat message or delta carries that the model generated: its answer,
    its reasoning (DeepSeek's and older vLLM's `reasoning_content`, newer vLLM's and
    OpenRouter's `reasoning`), a refusal, and tool calls in both spellings."""
    for key in ("content", "reasoning_content", "refusal"):
        if isinstance(message.get(key), str):
            yield message[key]
    reasoning = message.get("reasoning")
    # vLLM sent both reasoning fields for a while, with the same text: count it once.
    if isinstance(reasoning, str) and reasoning != message.get("reasoning_content"):
        yield reasoning
    calls = _items(message.get("tool_calls"))
    functions = [c.get("function") for c in calls if isinstance(c, Mapping)]
    functions.append(message.get("function_call"))  # the legacy single call
    for function in functions:
        if isinstance(function, Mapping):
            yield from _strings(function.get("name"), function.get("arguments"))


def _items(value: Any) -> list[Any] | tuple[Any, ...]:
    """A JSON array's items; nothing for anything else (a string is not a list of parts)."""
    return value if isinstance(value, list | tuple) else ()


def _strings(*values: Any) -> Iterable[str]:
    return (v for v in values if isinstance(v, str))


def _response_texts(payload: Mapping[str, Any]) -> Iterable[str]:
    delta = payload.get("delta")
    if isinstance(delta, str):  # a response.*.delta event: text, refusal, call arguments
        yield delta
        return
    for item in _items(payload.get("output")):
        if isinstance(item, Mapping):
            yield from _item_texts(item)


def _item_texts(item: Mapping[str, Any]) -> Iterable[str]:
    """A Responses output item's generated texts: message text and refusals, a reasoning
    item's summary and text, a function or custom tool call's name and input."""
    yield from _strings(item.get("name"), item.get("arguments"), item.get("input"))
    for key in ("content", "summary"):
        for part in _items(item.get(key)):
            if isinstance(part, Mapping):
                yield from _strings(part.get("text"), part.get("refusal"))


def estimate_usage(endpoint: str, body: Mapping[str, Any], model: str, generated: str) -> Usage:
    """Count with the local tokenizer when the upstream reported nothing."""
    return capped_usage(
        count_prompt(endpoint, body, model),
        0 if endpoint == "embeddings" else count_text(generated, model),
        0,
        is_estimated=True,
    )


def wire_usage(endpoint: str, usage: Usage) -> dict[str, Any]:
    """`usage` as OpenAI's answers spell it for `endpoint`: what the gateway counted, put
    where an upstream that reported nothing would have (OpenAI always sends one)."""
    total = usage.input_tokens + usage.output_tokens
    if endpoint == "embeddings":
        return {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens}
    if endpoint == "responses":
        return {
            "input_tokens": usage.input_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens},
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": total,
        }
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": total,
    }
