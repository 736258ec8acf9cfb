"""Stream step: output guardrails on a stream as it flows.

Each text the answer streams (a chat choice's content, each of its tool calls'
arguments, a completion's text, a Responses output text or function arguments)
is a growing string; its pieces go through the hold-back window (window.py), so
a match split across events is caught before any of it is released. An event
whose text is held back is sent with what may go now (possibly ""); what is held
goes out in the next event of that text, or, when the text ends (its choice's
`finish_reason`, a Responses `*.done` event, `[DONE]`, the end of the stream), in
an event made in its image just before. Responses events that repeat whole texts
(`*.done`, `response.completed`) are reviewed whole, redacted the same way.

A block ends the stream with an OpenAI-shaped error event; the matched text never
left (it was held). Events with no text pass through as they came. No I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.errors import ContentPolicyViolation
from gateway.guardrails.decision import GuardrailHit, review
from gateway.guardrails.kinds import Where
from gateway.guardrails.scanner import Rule, Scanner
from gateway.guardrails.texts import rewrite_response_event
from gateway.guardrails.window import advance
from gateway.sse import DONE_PAYLOAD, data_of, events_of
from gateway.stream.steps import NOTHING, Emit

Key = tuple[Any, ...]


def _every(key: Key, text: object) -> bool:
    return True


@dataclass(slots=True)
class _Text:
    """One growing text of the answer: what is held back, and how to send the rest."""

    template: dict[str, Any]  # an event of this text, to build a flush event from
    prefix: bytes  # the event's lines before `data:` (Responses: `event: ...`)
    pending: str = ""
    context: str = ""
    choice: Any = None


@dataclass(slots=True)
class OutputScanner:
    scanner: Scanner
    endpoint: str
    hits: list[GuardrailHit]  # the request context's list: appended once per rule
    _texts: dict[Key, _Text] = field(default_factory=dict)
    # Set by the first block: from then on nothing is released (checked after each event).
    _blocked_by: Rule | None = None

    def feed(self, chunk: bytes) -> Emit:
        out: list[bytes] = []
        for event in events_of(chunk):
            released = self._event(event)
            if self._blocked_by is not None:
                return self._end(b"".join(out))
            out.append(released)
        data = b"".join(out)
        return Emit(data) if data else NOTHING

    def finish(self) -> Emit:
        data = self._flush(_every)
        if self._blocked_by is not None:
            return self._end(b"")
        return Emit(data) if data else NOTHING

    def _end(self, released: bytes) -> Emit:
        assert self._blocked_by is not None
        return Emit(released, ContentPolicyViolation(self._blocked_by.name, on_output=True))

    # --- one event -------------------------------------------------------------

    def _event(self, event: bytes) -> bytes:
        payload = data_of(event)
        if payload is None or payload == DONE_PAYLOAD:
            return self._flush(_every) + event
        try:
            parsed = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return self._flush(_every) + event
        if type(parsed) is not dict:
            return event
        prefix = event[: event.find(b"data:")]
        if self.endpoint == "responses":
            return self._response_event(parsed, prefix, event)
        return self._choices_event(parsed, prefix, event)

    def _choices_event(self, parsed: dict[str, Any], prefix: bytes, event: bytes) -> bytes:
        choices = parsed.get("choices")
        if not isinstance(choices, list) or not choices:
            return self._flush(_every) + event
        before = b""
        changed = False
        for position, choice in enumerate(choices):
            if type(choice) is not dict:
                continue
            index = choice.get("index", position)
            ending = choice.get("finish_reason") is not None
            pieces = self._pieces(index, choice)
            for key, holder, field_name in pieces:
                text = self._texts.get(key)
                if text is None:
                    text = self._texts[key] = _Text(_template(parsed, key), prefix, choice=index)
                piece = holder[field_name]
                released = self._advance(key, text, piece, final=ending)
                if released != piece:
                    holder[field_name] = released
                    changed = True
            if ending:
                before += self._flush(_others_of(index, {key for key, _, _ in pieces}))
        if not changed:
            return before + event if before else event
        return before + prefix + b"data: " + orjson.dumps(parsed) + b"\n\n"

    def _pieces(self, index: Any, choice: dict[str, Any]) -> list[tuple[Key, dict[str, Any], str]]:
        """(key, the dict holding the text, its field) for each text in a choice."""
        found: list[tuple[Key, dict[str, Any], str]] = []
        if type(choice.get("text")) is str:
            found.append(((index, "text"), choice, "text"))
        delta = choice.get("delta")
        if type(delta) is not dict:
            return found
        if type(delta.get("content")) is str:
            found.append(((index, "content"), delta, "content"))
        calls = delta.get("tool_calls")
        if not calls:
            return found
        for position, call in enumerate(calls):
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                tool = call.get("index", position)
                found.append(((index, "tool", tool), function, "arguments"))
        return found

    def _response_event(self, parsed: dict[str, Any], prefix: bytes, event: bytes) -> bytes:
        kind = parsed.get("type")
        if kind in ("response.output_text.delta", "response.function_call_arguments.delta"):
            if not isinstance(parsed.get("delta"), str):
                return event
            key: Key = (kind, parsed.get("item_id"), parsed.get("content_index"))
            text = self._texts.get(key)
            if text is None:
                text = self._texts[key] = _Text(dict(parsed), prefix)
            released = self._advance(key, text, parsed["delta"], final=False)
            if released == parsed["delta"]:
                return event
            parsed["delta"] = released
            return prefix + b"data: " + orjson.dumps(parsed) + b"\n\n"
        # Any other event: the texts so far end here, then whole texts are reviewed.
        before = self._flush(_every)
        rewritten = rewrite_response_event(parsed, self._review_whole)
        if rewritten is parsed:
            return before + event
        return before + prefix + b"data: " + orjson.dumps(rewritten) + b"\n\n"

    # --- the window ------------------------------------------------------------

    def _advance(self, key: Key, text: _Text, piece: str, *, final: bool) -> str:
        if self._blocked_by is not None:
            return ""
        step = advance(self.scanner, text.context, text.pending + piece, final=final)
        if step.fired:
            self._record(step.fired)
        if step.blocked_by is not None:
            self._blocked_by = step.blocked_by
            return ""
        text.pending, text.context = step.keep, step.context
        if final:
            del self._texts[key]
        return step.release

    def _flush(self, which: Callable[[Key, _Text], bool]) -> bytes:
        """Release the held text of the texts `which` selects, each in an event of its own."""
        out: list[bytes] = []
        for key, text in list(self._texts.items()):
            if not which(key, text):
                continue
            released = self._advance(key, text, "", final=True)
            if released:
                event = _with_text(text.template, key, released)
                out.append(text.prefix + b"data: " + orjson.dumps(event) + b"\n\n")
        return b"".join(out)

    def _review_whole(self, whole: str) -> str:
        if self._blocked_by is not None:
            return whole  # not sent: the step ends after this event
        result = review(self.scanner, whole)
        self._record(result.fired)
        self._blocked_by = result.blocked_by
        return result.text

    def _record(self, fired: tuple[Rule, ...]) -> None:
        for rule in fired:
            hit = GuardrailHit(rule.name, rule.action, Where.OUTPUT)
            if hit not in self.hits:
                self.hits.append(hit)


def _others_of(choice: Any, seen: set[Key]) -> Callable[[Key, _Text], bool]:
    """The texts of `choice` that the ending event did not carry."""

    def which(key: Key, text: _Text) -> bool:
        return text.choice == choice and key not in seen

    return which


def _template(parsed: Mapping[str, Any], key: Key) -> dict[str, Any]:
    """The event's envelope (id, model, created, ...) without its choices or usage."""
    return {k: v for k, v in parsed.items() if k not in ("choices", "usage")}


def _with_text(template: dict[str, Any], key: Key, text: str) -> dict[str, Any]:
    """An event carrying `text` for the text `key` names, in the template's image."""
    if isinstance(key[0], str):  # Responses: (event type, item id, content index)
        return {**template, "delta": text}
    index = key[0]
    if key[1] == "text":
        choice: dict[str, Any] = {"index": index, "text": text, "finish_reason": None}
    elif key[1] == "content":
        choice = {"index": index, "delta": {"content": text}, "finish_reason": None}
    else:
        call = {"index": key[2], "function": {"arguments": text}}
        choice = {"index": index, "delta": {"tool_calls": [call]}, "finish_reason": None}
    return {**template, "choices": [choice]}
