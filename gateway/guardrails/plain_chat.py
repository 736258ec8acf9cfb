"""The common chat request and answer, read in one pass: messages of a role and a text,
settings that hold no text, an answer's choices of a plain message. Pure.

The readers (request_texts.py, answer_texts.py) walk any shape a body may take, field
by field, a function a field: most of what the guardrails cost per request when the
texts are short. Most requests and answers are this plain, and for them the result is
the readers' exactly: the same texts given to the text function in the same order, the
same inline cost charged, the same object back when nothing was rewritten, the same
copies when something was. Anything else (a name, a tool call, content parts, an
unknown field, a JSON answer) returns None, and the readers walk it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

from gateway.guardrails.json_texts import MAPPING, TextFn
from gateway.guardrails.request_fields import CHOICE_KEYS, CHUNK_KEYS, STREAM_OPTIONS_KEYS
from gateway.guardrails.scanner import apply_redactions
from gateway.guardrails.walk_cost import ENTRY_COST

_PLAIN_MESSAGE_KEYS = frozenset({"role", "content"})
# An answer's message: `refusal` null and `annotations` empty, as OpenAI sends them.
_PLAIN_ANSWER_MESSAGE_KEYS = frozenset({"role", "content", "refusal", "annotations"})


def counts_only(value: Any, depth: int = 0) -> bool:
    """Whether `value` (a `usage`) holds numbers only (in objects two levels deep at most,
    as OpenAI's `prompt_tokens_details`), or nothing."""
    if value is None or isinstance(value, int | float):
        return True
    if isinstance(value, MAPPING) and depth < 2:
        for item in value.values():
            if type(item) is not int and not counts_only(item, depth + 1):
                return False
        return True
    return False


def _plain_messages(messages: Any) -> TypeGuard[list[Any]]:
    if type(messages) is not list:
        return False
    for message in messages:
        if (
            type(message) is not dict
            or not _PLAIN_MESSAGE_KEYS.issuperset(message)
            or type(message.get("content")) is not str
        ):
            return False
    return True


def rewrite_plain_request(
    fields: frozenset[str], body: Mapping[str, Any], fn: TextFn
) -> Mapping[str, Any] | None:
    """A chat request's texts (request_texts.rewrite_request) when it holds only plain
    `messages` and others of `fields` (those known to hold no text); else None."""
    if type(body) is not dict or not fields.issuperset(body):
        return None
    messages = body.get("messages")
    options = body.get("stream_options")
    if not _plain_messages(messages) or (
        options is not None
        and isinstance(options, MAPPING)
        and not STREAM_OPTIONS_KEYS.issuperset(options)
    ):
        return None
    spend = getattr(fn, "spend", None)
    if spend is not None:
        spend(len(messages) * ENTRY_COST)
    rewritten: list[Any] | None = None
    for index, message in enumerate(messages):
        text = message["content"]
        spans = fn(text)
        if spans:
            if rewritten is None:
                rewritten = list(messages)
            rewritten[index] = {**message, "content": apply_redactions(text, spans)}
    return body if rewritten is None else {**body, "messages": rewritten}


def _plain_choices(choices: Any) -> TypeGuard[list[Any]]:
    if type(choices) is not list:
        return False
    for choice in choices:
        if type(choice) is not dict or not CHOICE_KEYS.issuperset(choice):
            return False
        message = choice.get("message")
        if (
            choice.get("text") is not None
            or type(message) is not dict
            or not _PLAIN_ANSWER_MESSAGE_KEYS.issuperset(message)
            or type(message.get("content")) is not str
            or message.get("refusal") is not None
            or message.get("annotations") not in (None, [])
        ):
            return False
    return True


def rewrite_plain_answer(payload: Mapping[str, Any], fn: TextFn) -> Mapping[str, Any] | None:
    """A whole chat answer's texts (answer_texts.rewrite_answer, its text not asked for as
    JSON) when its choices hold plain messages and it has no field but a chunk's and a
    numeric usage; else None. A choice whose text was rewritten loses its `logprobs`."""
    if (
        type(payload) is not dict
        or not CHUNK_KEYS.issuperset(payload)
        or not counts_only(payload.get("usage"))
    ):
        return None
    choices = payload.get("choices")
    if not _plain_choices(choices):
        return None
    spend = getattr(fn, "spend", None)
    if spend is not None:
        spend(len(choices) * ENTRY_COST)
    rewritten: list[Any] | None = None
    for index, choice in enumerate(choices):
        message = choice["message"]
        text = message["content"]
        spans = fn(text)
        if spans:
            if rewritten is None:
                rewritten = list(choices)
            content = apply_redactions(text, spans)
            checked = {**choice, "message": {**message, "content": content}}
            if checked.get("logprobs") is not None:
                checked = {**checked, "logprobs": None}
            rewritten[index] = checked
    return payload if rewritten is None else {**payload, "choices": rewritten}
