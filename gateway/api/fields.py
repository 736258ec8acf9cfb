"""The request-body fields each endpoint checks, and how: a table of pure rules.

A rule looks at one top-level field's value (None when absent or null) and
returns the OpenAI-shaped refusal, or None when the value may be forwarded.
Only what is cheap and certain for every OpenAI-compatible upstream is checked
here: types, empty arrays, the minimum of token counts; an upstream still
refuses by its own stricter rules (OpenAI's `max_output_tokens` >= 16, for one).
Messages follow OpenAI's wording ("Invalid type for 'n': expected an integer,
but got a string instead.") so a caller sees the same text with or without us.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.errors import (
    AboveMaximum,
    BelowMinimum,
    EmptyArray,
    InvalidRequest,
    InvalidType,
    cut,
)
from gateway.providers.base import Endpoint

Rule = Callable[[str, Any], InvalidRequest | None]


def kind_of(value: object) -> str:
    """A JSON value's kind as OpenAI's messages name it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def wrong_type(name: str, expected: str, value: object) -> InvalidType:
    return InvalidType(
        f"Invalid type for '{name}': expected {expected}, but got {kind_of(value)} instead.",
        param=name,
    )


def missing(name: str) -> InvalidRequest:
    return InvalidRequest(f"Missing required parameter: '{name}'.", param=name)


def empty_array(name: str) -> EmptyArray:
    return EmptyArray(
        f"Invalid '{name}': empty array. Expected an array with minimum length 1, "
        "but got an empty array instead.",
        param=name,
    )


# A token cap above this is no model's: refused, so it never inflates a reservation.
MAX_OUTPUT_TOKENS = 1_048_576


def integer(minimum: int, maximum: int | None = None) -> Rule:
    """An optional whole number >= `minimum` (and <= `maximum`); 10.0 counts as whole,
    true does not."""

    def rule(name: str, value: Any) -> InvalidRequest | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return wrong_type(name, "an integer", value)
        if isinstance(value, float) and not value.is_integer():
            return wrong_type(name, "an integer", value)
        if value < minimum:
            shown = int(value) if isinstance(value, float) else value
            return BelowMinimum(
                f"Invalid '{name}': integer below minimum value. "
                f"Expected a value >= {minimum}, but got {shown} instead.",
                param=name,
            )
        if maximum is not None and value > maximum:
            big = f"{value:.0f}" if isinstance(value, float) else str(value)
            return AboveMaximum(
                f"Invalid '{name}': integer above maximum value. "
                f"Expected a value <= {maximum}, but got {cut(big, 40)} instead.",
                param=name,
            )
        return None

    return rule


def number(name: str, value: Any) -> InvalidRequest | None:
    """An optional number (temperature, top_p); ranges are the upstream's to judge."""
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return None
    return wrong_type(name, "a number", value)


def boolean(name: str, value: Any) -> InvalidRequest | None:
    if value is None or isinstance(value, bool):
        return None
    return wrong_type(name, "a boolean", value)


def string(name: str, value: Any) -> InvalidRequest | None:
    if value is None or isinstance(value, str):
        return None
    return wrong_type(name, "a string", value)


def model(name: str, value: Any) -> InvalidRequest | None:
    if value is None:
        return missing(name)
    if not isinstance(value, str):
        return wrong_type(name, "a string", value)
    if not value:
        return InvalidRequest(f"'{name}' must not be empty.", param=name)
    return None


def stream_options(name: str, value: Any) -> InvalidRequest | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        return wrong_type(name, "an object", value)
    return boolean(f"{name}.include_usage", value.get("include_usage"))


def no_stream(name: str, value: Any) -> InvalidRequest | None:
    """Embeddings: `stream` may be absent or false, nothing else."""
    if value is True:
        return InvalidRequest("Embeddings cannot be streamed.", param=name)
    return boolean(name, value)


def messages(name: str, value: Any) -> InvalidRequest | None:
    if value is None:
        return missing(name)
    if not isinstance(value, list):
        return wrong_type(name, "an array of messages", value)
    if not value:
        return empty_array(name)
    for i, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            return InvalidRequest(
                f"Invalid message at {name}[{i}]: expected an object with a 'role'.",
                param=f"{name}[{i}]",
            )
    return None


def prompt(name: str, value: Any) -> InvalidRequest | None:
    """Completions: no prompt (or null) is allowed (the model writes from a document start)."""
    if value is None:
        return None
    if isinstance(value, str):
        return None
    if not isinstance(value, list):
        return wrong_type(name, "a string or an array", value)
    if not value:
        return empty_array(name)
    return None


def embedding_input(name: str, value: Any) -> InvalidRequest | None:
    """A non-empty string, or a non-empty array of non-empty strings, token ids or
    non-empty token lists (OpenAI: the input "cannot be an empty string")."""
    if value is None:
        return missing(name)
    if isinstance(value, str):
        return _empty_string(name) if not value else None
    if not isinstance(value, list):
        return wrong_type(name, "a string or an array", value)
    if not value:
        return empty_array(name)
    for i, item in enumerate(value):
        where = f"{name}[{i}]"
        if isinstance(item, str):
            if not item:
                return _empty_string(where)
        elif isinstance(item, list):
            if not item:
                return empty_array(where)
        elif isinstance(item, bool) or not isinstance(item, int):
            return wrong_type(where, "a string, a token id or an array of token ids", item)
    return None


def _empty_string(name: str) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid '{name}': empty string. The input to embed must not be empty.", param=name
    )


def background(name: str, value: Any) -> InvalidRequest | None:
    if value is True:
        # Background responses are polled at GET /v1/responses/{id}, which is not served.
        return InvalidRequest(
            "Background responses are not supported through this gateway; "
            "send the request without 'background' (streaming works).",
            param=name,
        )
    return None


_SAMPLING: tuple[tuple[str, Rule], ...] = (("temperature", number), ("top_p", number))
_STREAMING: tuple[tuple[str, Rule], ...] = (
    ("stream", boolean),
    ("stream_options", stream_options),
)

# Order matters only for which refusal a body with several faults gets: the
# model first (as before), then the fields an endpoint cannot do without.
RULES: dict[Endpoint, tuple[tuple[str, Rule], ...]] = {
    "chat": (
        ("model", model),
        *_STREAMING,
        ("messages", messages),
        ("max_tokens", integer(1, MAX_OUTPUT_TOKENS)),
        ("max_completion_tokens", integer(1, MAX_OUTPUT_TOKENS)),
        ("n", integer(1)),
        *_SAMPLING,
    ),
    "completions": (
        ("model", model),
        *_STREAMING,
        ("prompt", prompt),
        # 0 is allowed: with `echo` it scores the prompt without writing anything.
        ("max_tokens", integer(0, MAX_OUTPUT_TOKENS)),
        ("n", integer(1)),
        *_SAMPLING,
    ),
    "embeddings": (
        ("model", model),
        ("stream", no_stream),
        ("stream_options", stream_options),
        ("input", embedding_input),
    ),
    "responses": (
        ("model", model),
        *_STREAMING,
        ("max_output_tokens", integer(1, MAX_OUTPUT_TOKENS)),
        *_SAMPLING,
        ("previous_response_id", string),
        ("background", background),
    ),
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
    return None
