"""Whole answers ↔ OpenAI SSE streams, for the cache. Pure byte work, no I/O.

`replay` turns a stored whole answer into the stream OpenAI would have sent
(chat.completion.chunk or text_completion chunks: the role first, then the
content, then the finish reason, a usage chunk only when the client asked, then
`data: [DONE]`). `StreamAssembler` is a stream step that passes every chunk on
untouched and, when the stream completed, gives the whole answer a non-streamed
client would have got, so a completed stream is stored for both kinds of client.
Both carry what a message holds besides text and calls as OpenAI streams it:
`annotations` (a list, extended chunk by chunk) and `audio` (`data` and `transcript`
appended, `id` and `expires_at` as sent), and Azure OpenAI's content filter results:
`prompt_filter_results` on a chunk of its own before the choices (as Azure opens a
stream), `content_filter_results` on each choice.

Azure's first chunk (the prompt's filter results) says `id: ""`, `model: ""`,
`created: 0`: the whole answer takes the first id, model and fingerprint that is not
empty and the first `created` that is not 0, the values the answer's own chunks carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.providers.base import Endpoint
from gateway.sse import data_of, events_of
from gateway.stream.steps import Emit

DONE_EVENT = b"data: [DONE]\n\n"
STREAMABLE: frozenset[Endpoint] = frozenset({"chat", "completions"})
_HEAD_FIELDS = ("id", "created", "model", "system_fingerprint", "service_tier")
# Values a head field has on a chunk that does not belong to the answer (Azure's
# prompt-filter chunk): a later chunk's value replaces them.
_BLANK_HEADS: tuple[Any, ...] = (None, "", 0)
# Azure OpenAI's results for the prompt (`prompt_annotations` before api-version
# 2023-06-01-preview's rename): a whole answer's top-level field, a stream's first chunk.
_PROMPT_FILTER_FIELDS = ("prompt_filter_results", "prompt_annotations")
# Azure OpenAI's results for a choice's text: a whole choice's field, on a stream's chunks.
_CONTENT_FILTERS = "content_filter_results"
# Message fields a chat delta carries as text, appended chunk by chunk.
_TEXT_FIELDS = ("content", "refusal", "reasoning_content", "reasoning")


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def replay(
    endpoint: Endpoint, answer: bytes, *, include_usage: bool, with_logprobs: bool = True
) -> bytes:
    """The SSE bytes of a stored whole answer (chat or completions). ValueError if the
    stored bytes are not a whole answer of that endpoint. `with_logprobs` False: every
    chunk says `logprobs: null`, as a stream of a team with output rules does."""
    whole = orjson.loads(answer)
    if not isinstance(whole, dict) or not isinstance(whole.get("choices"), list):
        raise ValueError("not a whole answer")
    head: dict[str, Any] = {name: whole[name] for name in _HEAD_FIELDS if name in whole}
    head["object"] = "chat.completion.chunk" if endpoint == "chat" else "text_completion"
    if include_usage:
        head["usage"] = None  # OpenAI: every chunk but the last says usage: null
    prompt_filters = {name: whole[name] for name in _PROMPT_FILTER_FIELDS if name in whole}
    if endpoint == "chat":
        chunks = _chat_choices(whole["choices"], with_logprobs)
    elif endpoint == "completions":
        chunks = _text_choices(whole["choices"], with_logprobs)
    else:
        raise ValueError(f"{endpoint} answers are not streamed")
    events = [_event({**head, "choices": [chunk]}) for chunk in chunks]
    if prompt_filters:  # Azure opens its stream with them, on a chunk without choices
        events.insert(0, _event({**head, "choices": [], **prompt_filters}))
    usage = whole.get("usage")
    if include_usage and isinstance(usage, dict):
        events.append(_event({**head, "choices": [], "usage": usage}))
    events.append(DONE_EVENT)
    return b"".join(events)


def _chat_choices(choices: list[Any], with_logprobs: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for position, choice in enumerate(choices):
        if not isinstance(choice, dict):
            raise ValueError("a choice is not an object")
        index = choice.get("index", position)
        message = choice.get("message") or {}
        role = message.get("role", "assistant")
        first: dict[str, Any] = {"role": role}
        if isinstance(message.get("content"), str):
            first["content"] = ""
        if "refusal" in message and message["refusal"] is None:
            first["refusal"] = None  # OpenAI's first delta says so: no refusal
        out.append(_chat_chunk(index, first))
        delta: dict[str, Any] = {
            name: message[name] for name in _TEXT_FIELDS if isinstance(message.get(name), str)
        }
        if delta.get("content") == "":
            del delta["content"]
        if isinstance(message.get("function_call"), dict):
            delta["function_call"] = message["function_call"]
        calls = message.get("tool_calls")
        if isinstance(calls, list) and calls:
            delta["tool_calls"] = [
                {"index": i, **call} for i, call in enumerate(calls) if isinstance(call, dict)
            ]
        if isinstance(message.get("annotations"), list) and message["annotations"]:
            delta["annotations"] = message["annotations"]
        if isinstance(message.get("audio"), dict):
            delta["audio"] = message["audio"]  # OpenAI streams it as delta.audio
        logprobs = choice.get("logprobs") if with_logprobs else None
        filters = _content_filters(choice)  # on the chunk with the text they judged
        if delta or logprobs is not None:
            out.append({**_chat_chunk(index, delta, logprobs=logprobs), **filters})
            filters = {}
        finish_reason = choice.get("finish_reason") or "stop"
        out.append({**_chat_chunk(index, {}, finish_reason=finish_reason), **filters})
    return out


def _content_filters(choice: dict[str, Any]) -> dict[str, Any]:
    """The choice's Azure content filter results, as a chunk's field (else nothing)."""
    if _CONTENT_FILTERS in choice:
        return {_CONTENT_FILTERS: choice[_CONTENT_FILTERS]}
    return {}


def _chat_chunk(
    index: int, delta: dict[str, Any], *, logprobs: Any = None, finish_reason: str | None = None
) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}


def _text_choices(choices: list[Any], with_logprobs: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for position, choice in enumerate(choices):
        if not isinstance(choice, dict):
            raise ValueError("a choice is not an object")
        index = choice.get("index", position)
        text = choice.get("text") or ""
        logprobs = choice.get("logprobs") if with_logprobs else None
        piece = {"text": text, "index": index, "logprobs": logprobs, "finish_reason": None}
        out.append({**piece, **_content_filters(choice)})
        finish = choice.get("finish_reason") or "stop"
        out.append({"text": "", "index": index, "logprobs": None, "finish_reason": finish})
    return out


# --- assembling a stream into its whole answer -----------------------------------


@dataclass(slots=True)
class _ToolCall:
    id: str | None = None
    type: str = "function"
    name: list[str] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Choice:
    role: str = "assistant"
    texts: dict[str, list[str]] = field(default_factory=dict)  # field name → parts
    tool_calls: dict[int, _ToolCall] = field(default_factory=dict)
    function_call: dict[str, list[str]] | None = None
    annotations: list[Any] | None = None  # None: no delta carried the field
    says_no_refusal: bool = False  # a delta carried `refusal: null` (OpenAI's first does)
    audio: dict[str, Any] | None = None  # data and transcript as lists of parts
    logprobs: dict[str, list[Any]] | None = None  # chat: content/refusal; text: per list
    content_filters: dict[str, Any] | None = None  # Azure's, per category; None: never sent
    finish_reason: str | None = None


class StreamAssembler:
    """A stream step that relays every chunk untouched and learns the whole answer.

    Place it before the output guardrail's scanner (it learns what the upstream sent,
    which the whole-answer rules then judge: flow.keep_stream) and before the usage
    observer (which may strip the usage chunk the cache needs).
    """

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._head: dict[str, Any] = {}
        self._prompt_filters: dict[str, Any] = {}
        self._choices: dict[int, _Choice] = {}
        self._usage: Any = None
        self._done = False
        self._broken = endpoint not in STREAMABLE

    def feed(self, chunk: bytes) -> Emit:
        if not self._broken:
            for event in events_of(chunk):
                self._learn(event)
        return Emit(chunk)

    def finish(self) -> Emit:
        return Emit()

    def answer(self) -> bytes | None:
        """The whole-answer JSON; None unless the stream ended with [DONE], every
        choice finished and no event was an error or unreadable."""
        choices = self._choices
        if self._broken or not self._done or not choices:
            return None
        if any(c.finish_reason is None for c in choices.values()):
            return None
        whole: dict[str, Any] = {**self._head, **self._prompt_filters}
        if self._endpoint == "chat":
            whole["object"] = "chat.completion"
            whole["choices"] = [_whole_chat(i, choices[i]) for i in sorted(choices)]
        else:
            whole["object"] = "text_completion"
            whole["choices"] = [_whole_text(i, choices[i]) for i in sorted(choices)]
        if self._usage is not None:
            whole["usage"] = self._usage
        return orjson.dumps(whole)

    def _learn(self, event: bytes) -> None:
        payload = data_of(event)
        if payload is None or not payload:
            return  # a comment line (`: ping`)
        if payload == b"[DONE]":
            self._done = True
            return
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self._broken = True
            return
        if not isinstance(chunk, dict) or "error" in chunk:
            self._broken = True
            return
        for name in _HEAD_FIELDS:
            if name in chunk and self._head.get(name) in _BLANK_HEADS:
                self._head[name] = chunk[name]
        for name in _PROMPT_FILTER_FIELDS:
            if chunk.get(name) is not None and name not in self._prompt_filters:
                self._prompt_filters[name] = chunk[name]
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or not isinstance(choice.get("index", 0), int):
                self._broken = True
                return
            state = self._choices.setdefault(choice.get("index", 0), _Choice())
            if self._endpoint == "chat":
                _learn_chat(state, choice)
            else:
                _learn_text(state, choice)
            _learn_content_filters(state, choice)
            if choice.get("finish_reason") is not None:
                state.finish_reason = choice["finish_reason"]


def _learn_chat(state: _Choice, choice: dict[str, Any]) -> None:
    delta = choice.get("delta") or {}
    if isinstance(delta.get("role"), str):
        state.role = delta["role"]
    for name in _TEXT_FIELDS:
        if isinstance(delta.get(name), str):
            state.texts.setdefault(name, []).append(delta[name])
    if "refusal" in delta and delta["refusal"] is None:
        state.says_no_refusal = True
    call = delta.get("function_call")
    if isinstance(call, dict):
        parts = state.function_call = state.function_call or {"name": [], "arguments": []}
        for part in ("name", "arguments"):
            if isinstance(call.get(part), str):
                parts[part].append(call[part])
    if isinstance(delta.get("annotations"), list):
        state.annotations = (state.annotations or []) + delta["annotations"]
    if isinstance(delta.get("audio"), dict):
        _learn_audio(state, delta["audio"])
    for call in delta.get("tool_calls") or ():
        if not isinstance(call, dict):
            continue
        tool = state.tool_calls.setdefault(call.get("index", 0), _ToolCall())
        tool.id = call.get("id") or tool.id
        tool.type = call.get("type") or tool.type
        function = call.get("function") or {}
        if isinstance(function.get("name"), str):
            tool.name.append(function["name"])
        if isinstance(function.get("arguments"), str):
            tool.arguments.append(function["arguments"])
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, dict):
        into = state.logprobs = state.logprobs or {}
        for name, items in logprobs.items():
            if isinstance(items, list):
                into.setdefault(name, []).extend(items)


def _learn_content_filters(state: _Choice, choice: dict[str, Any]) -> None:
    """Azure judges a stream's text piece by piece: a category's latest result stands
    for the answer (a chunk with `{}` judged nothing and changes nothing)."""
    results = choice.get(_CONTENT_FILTERS)
    if isinstance(results, dict):
        state.content_filters = {**(state.content_filters or {}), **results}


def _learn_audio(state: _Choice, piece: dict[str, Any]) -> None:
    """OpenAI streams audio as base64 `data` and `transcript` in parts; `id` and
    `expires_at` come once (the last value sent wins)."""
    audio = state.audio = state.audio or {}
    for name, value in piece.items():
        if name in _AUDIO_PARTS and isinstance(value, str):
            audio.setdefault(name, []).append(value)
        elif name not in _AUDIO_PARTS and value is not None:
            audio[name] = value


_AUDIO_PARTS = ("data", "transcript")


def _whole_chat(index: int, state: _Choice) -> dict[str, Any]:
    message: dict[str, Any] = {"role": state.role, "content": None}
    if state.says_no_refusal:
        message["refusal"] = None  # as the whole answer says it (a text refusal replaces it)
    for name, parts in state.texts.items():
        message[name] = "".join(parts)
    if state.function_call is not None:
        message["function_call"] = {k: "".join(v) for k, v in state.function_call.items()}
    if state.tool_calls:
        message["tool_calls"] = [
            {
                "id": tool.id,
                "type": tool.type,
                "function": {"name": "".join(tool.name), "arguments": "".join(tool.arguments)},
            }
            for _, tool in sorted(state.tool_calls.items())
        ]
    if state.annotations is not None:
        message["annotations"] = state.annotations
    if state.audio is not None:
        message["audio"] = {
            name: "".join(value) if name in _AUDIO_PARTS else value
            for name, value in state.audio.items()
        }
    return {
        "index": index,
        "message": message,
        "logprobs": state.logprobs,
        "finish_reason": state.finish_reason,
        **_whole_filters(state),
    }


def _whole_filters(state: _Choice) -> dict[str, Any]:
    if state.content_filters is None:
        return {}
    return {_CONTENT_FILTERS: state.content_filters}


def _learn_text(state: _Choice, choice: dict[str, Any]) -> None:
    if isinstance(choice.get("text"), str):
        state.texts.setdefault("text", []).append(choice["text"])
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, dict):
        into = state.logprobs = state.logprobs or {}
        for name, items in logprobs.items():
            if isinstance(items, list):
                into.setdefault(name, []).extend(items)


def _whole_text(index: int, state: _Choice) -> dict[str, Any]:
    return {
        "text": "".join(state.texts.get("text", [])),
        "index": index,
        "logprobs": state.logprobs,
        "finish_reason": state.finish_reason,
        **_whole_filters(state),
    }
