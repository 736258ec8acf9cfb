"""How each request-body field is checked: pure rules (field_table.py says which
endpoint checks which field).

A rule looks at one top-level field's value (None when absent or null) and
returns the OpenAI-shaped refusal, or None when the value may be forwarded.
Only what is cheap and certain for every OpenAI-compatible upstream is checked
here: types, empty arrays, the minimum of token counts, the ranges OpenAI
documents for sampling fields, the content a message's role requires; an upstream still
refuses by its own stricter rules (OpenAI's `max_output_tokens` >= 16, for one).
Messages follow OpenAI's wording ("Invalid type for 'n': expected an integer,
but got a string instead.") so a caller sees the same text with or without us.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.errors import (
    AboveMaximum,
    ArrayTooLong,
    BelowMinimum,
    DecimalAboveMaximum,
    DecimalBelowMinimum,
    EmptyArray,
    InvalidRequest,
    InvalidType,
    InvalidValue,
    cut,
    quoted,
)

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


def supported(values: tuple[str, ...]) -> str:
    """OpenAI's list of allowed values: 'a' and 'b'; 'a', 'b', and 'c'."""
    shown = [f"'{v}'" for v in values]
    if len(shown) <= 2:
        return " and ".join(shown)
    return f"{', '.join(shown[:-1])}, and {shown[-1]}"


def invalid_value(name: str, value: str, allowed: tuple[str, ...]) -> InvalidValue:
    return InvalidValue(
        f"Invalid value: {quoted(value)}. Supported values are: {supported(allowed)}.",
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
# OpenAI's bounds: choices per request, completions' best_of, stop sequences, and the
# items of an embeddings input array (texts, token ids or token arrays: "any array must
# be 2048 dimensions or less"; a longer one would be estimated and reserved for nothing).
MAX_CHOICES = 128
MAX_BEST_OF = 20
MAX_STOP_SEQUENCES = 4
MAX_EMBEDDING_INPUTS = 2048


class Integer:
    """The rule of an optional whole number >= `minimum` (and <= `maximum`; None:
    unbounded, within 64 bits as body.py ensures); 10.0 counts as whole, true does not.
    Its bounds are kept, so body.py refuses an integer too long for 64 bits by them."""

    __slots__ = ("maximum", "minimum")

    def __init__(self, minimum: int | None, maximum: int | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum

    def __call__(self, name: str, value: Any) -> InvalidRequest | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return wrong_type(name, "an integer", value)
        if isinstance(value, float) and not value.is_integer():
            return wrong_type(name, "an integer", value)
        if self.minimum is not None and value < self.minimum:
            shown = int(value) if isinstance(value, float) else value
            return below_minimum(name, self.minimum, str(shown))
        if self.maximum is not None and value > self.maximum:
            big = f"{value:.0f}" if isinstance(value, float) else str(value)
            return above_maximum(name, self.maximum, big)
        return None

    def beyond_64_bits(self, name: str, digits: str) -> InvalidRequest | None:
        """The refusal of an integer past 64 bits (its JSON digits, never made an int: a
        hostile one may have millions): past every bound, so refused as any value past
        this field's bound is; None when the field has no bound on that side."""
        if digits.startswith("-"):
            return None if self.minimum is None else below_minimum(name, self.minimum, digits)
        return None if self.maximum is None else above_maximum(name, self.maximum, digits)


def integer(minimum: int | None, maximum: int | None = None) -> Integer:
    """An Integer rule (a Rule, with its bounds)."""
    return Integer(minimum, maximum)


def below_minimum(name: str, minimum: int, shown: str) -> BelowMinimum:
    return BelowMinimum(
        f"Invalid '{name}': integer below minimum value. "
        f"Expected a value >= {minimum}, but got {cut(shown, 40)} instead.",
        param=name,
    )


def above_maximum(name: str, maximum: int, shown: str) -> AboveMaximum:
    return AboveMaximum(
        f"Invalid '{name}': integer above maximum value. "
        f"Expected a value <= {maximum}, but got {cut(shown, 40)} instead.",
        param=name,
    )


def bounded_number(minimum: int, maximum: int) -> Rule:
    """An optional number within [minimum, maximum], OpenAI's documented range of a
    sampling field (temperature: 0 to 2), refused outside it as OpenAI does."""

    def rule(name: str, value: Any) -> InvalidRequest | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return wrong_type(name, "a number", value)
        if value < minimum:
            return DecimalBelowMinimum(
                f"Invalid '{name}': decimal below minimum value. "
                f"Expected a value >= {minimum}, but got {cut(str(value), 40)} instead.",
                param=name,
            )
        if value > maximum:
            return DecimalAboveMaximum(
                f"Invalid '{name}': decimal above maximum value. "
                f"Expected a value <= {maximum}, but got {cut(str(value), 40)} instead.",
                param=name,
            )
        return None

    return rule


def boolean(name: str, value: Any) -> InvalidRequest | None:
    if value is None or isinstance(value, bool):
        return None
    return wrong_type(name, "a boolean", value)


def string(name: str, value: Any) -> InvalidRequest | None:
    if value is None or isinstance(value, str):
        return None
    return wrong_type(name, "a string", value)


def json_object(name: str, value: Any) -> InvalidRequest | None:
    if value is None or isinstance(value, dict):
        return None
    return wrong_type(name, "an object", value)


def string_or_object(name: str, value: Any) -> InvalidRequest | None:
    """`tool_choice`: "auto"/"none"/"required", or an object naming a tool."""
    if value is None or isinstance(value, str | dict):
        return None
    return wrong_type(name, "a string or an object", value)


def string_or_array(name: str, value: Any) -> InvalidRequest | None:
    """The Responses API's `input`: a text, or an array of input items."""
    if value is None or isinstance(value, str | list):
        return None
    return wrong_type(name, "a string or an array", value)


def array_of_objects(name: str, value: Any) -> InvalidRequest | None:
    """`tools`: an array of tool objects."""
    if value is None:
        return None
    if not isinstance(value, list):
        return wrong_type(name, "an array", value)
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            return wrong_type(f"{name}[{i}]", "an object", item)
    return None


def one_of(*allowed: str) -> Rule:
    """An optional string among `allowed` (an enum, like `encoding_format`)."""
    kinds = f"one of {supported(allowed)}"

    def rule(name: str, value: Any) -> InvalidRequest | None:
        if value is None or value in allowed:
            return None
        if not isinstance(value, str):
            return wrong_type(name, kinds, value)
        return invalid_value(name, value, allowed)

    return rule


def stop(name: str, value: Any) -> InvalidRequest | None:
    """A stop sequence, or an array of at most MAX_STOP_SEQUENCES of them."""
    if value is None or isinstance(value, str):
        return None
    if not isinstance(value, list):
        return wrong_type(name, "a string or an array of strings", value)
    if len(value) > MAX_STOP_SEQUENCES:
        return array_too_long(name, MAX_STOP_SEQUENCES, len(value))
    for i, item in enumerate(value):
        if not isinstance(item, str):
            return wrong_type(f"{name}[{i}]", "a string", item)
    return None


def array_too_long(name: str, maximum: int, length: int) -> ArrayTooLong:
    return ArrayTooLong(
        f"Invalid '{name}': array too long. Expected an array with maximum length "
        f"{maximum}, but got an array with length {length} instead.",
        param=name,
    )


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


# In the order OpenAI lists them when it refuses another role.
ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_ROLES = frozenset(ROLES)
# The roles OpenAI refuses without a content: an assistant's may be left out when it
# carries tool calls (or a refusal, audio); a function result's may be null.
_NEEDS_CONTENT = frozenset({"system", "user", "developer", "tool"})


def messages(name: str, value: Any) -> InvalidRequest | None:
    """A non-empty array of messages, each with a known role and a content that is a
    string, an array of content parts (objects), or null; a system, user, developer or
    tool message has a content, and a tool message a string `tool_call_id`."""
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
        role = message["role"]
        if role not in _ROLES:
            return invalid_value(f"{name}[{i}].role", role, ROLES)
        content = message.get("content")
        if role in _NEEDS_CONTENT:
            if content is None:
                return missing(f"{name}[{i}].content")
            if role == "tool":
                refusal = _tool_call_id(f"{name}[{i}].tool_call_id", message.get("tool_call_id"))
                if refusal is not None:
                    return refusal
        if content is None or isinstance(content, str):
            continue
        where = f"{name}[{i}].content"
        if not isinstance(content, list):
            return wrong_type(where, "a string or an array of content parts", content)
        for j, part in enumerate(content):
            if not isinstance(part, dict):
                return wrong_type(f"{where}[{j}]", "an object", part)
    return None


def _tool_call_id(name: str, value: Any) -> InvalidRequest | None:
    """A tool message names the call it answers."""
    return missing(name) if value is None else string(name, value)


def prompt(name: str, value: Any) -> InvalidRequest | None:
    """Completions: no prompt (or null) is allowed (the model writes from a document start);
    else a string, or an array of strings, token ids or non-empty token lists (one kind)."""
    if value is None:
        return None
    if isinstance(value, str):
        return None
    if not isinstance(value, list):
        return wrong_type(name, "a string or an array", value)
    if not value:
        return empty_array(name)
    return _input_items(name, value, empty_strings=True)


def embedding_input(name: str, value: Any) -> InvalidRequest | None:
    """A non-empty string, or an array of 1 to MAX_EMBEDDING_INPUTS non-empty strings,
    token ids or non-empty token lists (OpenAI: the input "cannot be an empty string")."""
    if value is None:
        return missing(name)
    if isinstance(value, str):
        return _empty_string(name) if not value else None
    if not isinstance(value, list):
        return wrong_type(name, "a string or an array", value)
    if not value:
        return empty_array(name)
    if len(value) > MAX_EMBEDDING_INPUTS:  # before the items: a long array is refused at once
        return array_too_long(name, MAX_EMBEDDING_INPUTS, len(value))
    return _input_items(name, value, empty_strings=False)


def _input_items(name: str, value: list[Any], *, empty_strings: bool) -> InvalidRequest | None:
    """A non-empty array of strings, token ids or non-empty token id arrays, all of one
    kind (`empty_strings`: may a string item be empty)."""
    kind = type(value[0])  # the array's kind: strings, token ids or token id arrays
    for i, item in enumerate(value):
        where = f"{name}[{i}]"
        if isinstance(item, str):
            if not item and not empty_strings:
                return _empty_string(where)
        elif isinstance(item, list):
            if not item:
                return empty_array(where)
            if not _JUST_INT.issuperset(map(type, item)):  # C-speed: token ids are many
                for j, token in enumerate(item):
                    if type(token) is not int:
                        return wrong_type(f"{where}[{j}]", "an integer", token)
        elif isinstance(item, bool) or not isinstance(item, int):
            return wrong_type(where, "a string, a token id or an array of token ids", item)
        if type(item) is not kind:  # item 0 passed, so `kind` is one of _INPUT_KINDS
            return wrong_type(where, f"{_INPUT_KINDS[kind]} like '{name}[0]'", item)
    return None


_JUST_INT = frozenset({int})
# An input (or prompt) array holds one kind of item (OpenAI refuses a mix).
_INPUT_KINDS = {str: "a string", int: "a token id", list: "an array of token ids"}


def _empty_string(name: str) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid '{name}': empty string. The input to embed must not be empty.", param=name
    )


def background(name: str, value: Any) -> InvalidRequest | None:
    """Responses: `background` may be absent or false, nothing else (not "true" or 1
    either: an upstream that coerces them would run a response we never see or charge)."""
    if value is True:
        # Background responses are polled at GET /v1/responses/{id}, which is not served.
        return InvalidRequest(
            "Background responses are not supported through this gateway; "
            "send the request without 'background' (streaming works).",
            param=name,
        )
    return boolean(name, value)
