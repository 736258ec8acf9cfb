"""Which request-body fields each endpoint checks (the rules are in fields.py), the
rules that relate two fields, and the walk that finds a body's first fault (and the
field bound that refuses an integer past 64 bits).

Kept cheap for the hot path: an absent optional field costs one dict lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.api.fields import (
    MAX_BEST_OF,
    MAX_CHOICES,
    MAX_OUTPUT_TOKENS,
    Integer,
    Rule,
    array_of_objects,
    background,
    boolean,
    bounded_number,
    embedding_input,
    integer,
    json_object,
    messages,
    model,
    no_stream,
    one_of,
    prompt,
    stop,
    stream_options,
    string,
    string_or_array,
    string_or_object,
)
from gateway.errors import InvalidRequest, InvalidValue
from gateway.providers.base import Endpoint

# A rule over two or more fields of the body (run after every field's own rule passed).
BodyRule = Callable[[dict[str, Any]], InvalidRequest | None]


def stream_options_need_stream(body: dict[str, Any]) -> InvalidRequest | None:
    """OpenAI refuses stream options on a request that does not stream."""
    if body.get("stream_options") is not None and body.get("stream") is not True:
        return InvalidRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    return None


def best_of_covers_n(body: dict[str, Any]) -> InvalidRequest | None:
    """Completions: `best_of` candidates are generated to return `n` of them."""
    best_of, n = body.get("best_of"), body.get("n")
    if best_of is not None and n is not None and best_of < n:
        return InvalidValue(
            f"Invalid 'best_of': {int(best_of)} is less than 'n' ({int(n)}); "
            "best_of must be greater than or equal to n.",
            param="best_of",
        )
    return None


def conversation(name: str, value: Any) -> InvalidRequest | None:
    """Responses: a `conversation` names an object of /v1/conversations, not served here.
    Its size could never be known, so no budget could count what the upstream bills for
    it (a `previous_response_id` carries its size: routing/affinity.py). Null: absent."""
    if value is None:
        return None
    return InvalidRequest(
        "Conversation objects are not supported through this gateway; continue a "
        "conversation with 'previous_response_id' instead.",
        param=name,
    )


# OpenAI's documented ranges (the openai SDK's docstrings; it refuses values outside).
_SAMPLING: tuple[tuple[str, Rule], ...] = (
    ("temperature", bounded_number(0, 2)),
    ("top_p", bounded_number(0, 1)),
)
_PENALTY = bounded_number(-2, 2)
_STREAMING: tuple[tuple[str, Rule], ...] = (
    ("stream", boolean),
    ("stream_options", stream_options),
)
_GENERATING: tuple[tuple[str, Rule], ...] = (
    *_SAMPLING,
    ("presence_penalty", _PENALTY),
    ("frequency_penalty", _PENALTY),
    ("n", integer(1, MAX_CHOICES)),
    ("stop", stop),
    ("seed", integer(None)),
    ("logit_bias", json_object),
    ("user", string),
)

# Another endpoint's output cap ("foreign cap") is checked by this endpoint's own
# cap's bounds: an upstream may honour it, so limits/estimate.py reserves the
# largest cap a body carries, and a bad one must be refused rather than ignored.
# Order matters only for which refusal a body with several faults gets: the
# model first (as before), then the fields an endpoint cannot do without.
RULES: dict[Endpoint, tuple[tuple[str, Rule], ...]] = {
    "chat": (
        ("model", model),
        *_STREAMING,
        ("messages", messages),
        ("max_tokens", integer(1, MAX_OUTPUT_TOKENS)),
        ("max_completion_tokens", integer(1, MAX_OUTPUT_TOKENS)),
        ("max_output_tokens", integer(1, MAX_OUTPUT_TOKENS)),  # a foreign cap
        *_GENERATING,
        ("tools", array_of_objects),
        ("tool_choice", string_or_object),
        ("parallel_tool_calls", boolean),
        ("response_format", json_object),
        ("logprobs", boolean),
        ("store", boolean),
    ),
    "completions": (
        ("model", model),
        *_STREAMING,
        ("prompt", prompt),
        # 0 is allowed: with `echo` it scores the prompt without writing anything.
        ("max_tokens", integer(0, MAX_OUTPUT_TOKENS)),
        ("max_completion_tokens", integer(0, MAX_OUTPUT_TOKENS)),  # foreign caps
        ("max_output_tokens", integer(0, MAX_OUTPUT_TOKENS)),
        *_GENERATING,
        ("best_of", integer(1, MAX_BEST_OF)),
        ("echo", boolean),
        # Completions' logprobs is a count (OpenAI's maximum is 5; vLLM's is configured).
        ("logprobs", integer(0)),
    ),
    "embeddings": (
        ("model", model),
        ("stream", no_stream),
        ("stream_options", stream_options),
        ("input", embedding_input),
        ("encoding_format", one_of("float", "base64")),
        ("dimensions", integer(1)),
        ("user", string),
    ),
    "responses": (
        ("model", model),
        *_STREAMING,
        ("input", string_or_array),
        ("instructions", string),
        ("max_output_tokens", integer(1, MAX_OUTPUT_TOKENS)),
        ("max_tokens", integer(1, MAX_OUTPUT_TOKENS)),  # foreign caps
        ("max_completion_tokens", integer(1, MAX_OUTPUT_TOKENS)),
        *_SAMPLING,
        ("tools", array_of_objects),
        ("tool_choice", string_or_object),
        ("parallel_tool_calls", boolean),
        ("user", string),
        ("previous_response_id", string),
        ("store", boolean),
        ("background", background),
        ("conversation", conversation),
    ),
}

# Checked once every field has passed its own rule (so the values have their types).
BODY_RULES: dict[Endpoint, tuple[BodyRule, ...]] = {
    "chat": (stream_options_need_stream,),
    "completions": (stream_options_need_stream, best_of_covers_n),
    "embeddings": (),
    "responses": (),
}


# The rules that refuse a missing field; every other rule passes an absent or null one.
REQUIRED: frozenset[Rule] = frozenset({model, messages, embedding_input})


def first_refusal(endpoint: Endpoint, body: dict[str, Any]) -> InvalidRequest | None:
    """The first rule of `endpoint` that `body` breaks, or None."""
    for name, rule in RULES[endpoint]:
        value = body.get(name)
        if value is None and rule not in REQUIRED:
            continue  # most optional fields are absent: skip the call
        refusal = rule(name, value)
        if refusal is not None:
            return refusal
    for body_rule in BODY_RULES[endpoint]:
        refusal = body_rule(body)
        if refusal is not None:
            return refusal
    return None


def beyond_64_bits_refusal(endpoint: Endpoint, path: str, digits: str) -> InvalidRequest | None:
    """The refusal of an integer past 64 bits (its JSON `digits`) at `path` when that is a
    top-level integer field of `endpoint` with a bound on that side: the field's own, as
    for any value past it (max_tokens: "<= 1048576", integer_above_max_value). None
    elsewhere: body.py's refusal names the field and the 64-bit range."""
    for name, rule in RULES[endpoint]:
        if name == path:
            return rule.beyond_64_bits(name, digits) if isinstance(rule, Integer) else None
    return None
