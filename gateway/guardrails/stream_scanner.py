"""Stream step: output guardrails on a stream as it flows.

Each text the answer streams (a chat choice's content, whether a string or a list of
text parts, which continue it; its refusal, reasoning, audio transcript, each of its tool
calls' arguments or custom input and a legacy function call's arguments, and any other
string of its delta but the structure (`thinking`, a provider's own field); a
completion's text; a Responses output text, refusal, reasoning
summary or text, function or MCP arguments, custom tool input, code interpreter code)
is a growing string; its pieces go through the hold-back window (window.py), so a
match split across events is caught before any of it is released. An event whose
text is held back is sent with what may go now (possibly ""); what is held goes out
in the next event of that text, or, when the text ends (its choice's `finish_reason`,
a Responses `*.done` event of its item, the response's end, `[DONE]`, the end of the
stream), in an event made in its image just before. An event in between (a keep-alive
comment, a usage chunk, a Responses annotation or item added) releases nothing. Text
that comes after its text ended (a chat or completions choice's after its
`finish_reason` or an upstream's error event, a Responses delta after its `*.done`) is
dropped: what was held went out at the end, and a fresh window would not see a match
that began there. Texts that come whole (a chat delta's URL citations, and its fields
that hold an object or a list, its content parts' other keys, a choice's own unknown
keys such as vLLM's `stop_reason`: stream_values.py; an event's own top-level fields but
its structure (request_fields.CHUNK_KEYS), such as Perplexity's `search_results`; every
other Responses event, every string in it but its structure and base64 (items and parts
added, `*.done` events that repeat whole texts, `response.completed`: texts.py); a
delta's `function_call` and `audio` but for the text growing in them; an upstream's error
event, chat's `{"error": ...}`, Responses' `error` and `response.failed`, whose message
may quote the prompt) are reviewed whole, redacted the same way.

A block ends the stream with an OpenAI-shaped error event; the matched text never
left (it was held). Events with no text pass through as they came. No I/O.

Arguments are JSON text: the window sees them as their reader will, every escape
decoded, while they are held and released as written, a redaction written in whole
escapes (json_escapes.py; an escape cut at a piece's end waits for the next piece): the
same JSON value, redacted, and clean arguments byte-for-byte. Arguments that are an
object or an array stay JSON: nothing is released that ends inside a bare value (a
number may go on, and a redaction replaces it whole by the marker as a string:
json_layout.py). The content (chat) or output text (Responses) of an answer the request
asked to be JSON (`is_json`) is read the same way.

An event is sent as it came unless the scan changed it; one it changed is written
again, with U+2028 and U+2029 escaped (`_json`).

Logprobs are dropped (`null`; Responses: `[]`) from every event: an event's tokens
spell its text as it came, before the window held back or redacted any of it.

Most events of a stream are alike but for their text: the first one parsed teaches
the scanner its shape (the bytes before and after the text), and later events of
that shape are scanned without a JSON parse or a re-encoding (event_shape.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson

from gateway.errors import ContentPolicyViolation
from gateway.guardrails.check import (
    INLINE_CHARS,
    INLINE_MATCHES,
    MAX_MATCHES,
    NON_ASCII_WEIGHT,
    inline_weight,
)
from gateway.guardrails.decision import GuardrailHit, review
from gateway.guardrails.event_shape import (
    MAX_SHAPES_LEARNED,
    SLOT,
    Key,
    Shape,
    is_plain,
    learn_shape,
)
from gateway.guardrails.json_escapes import Escaped, split_incomplete
from gateway.guardrails.json_layout import Layout, extends_bare
from gateway.guardrails.json_texts import NameNotRedactable
from gateway.guardrails.kinds import GuardAction, Where
from gateway.guardrails.refusals import TooManyMatches
from gateway.guardrails.request_fields import CHUNK_KEYS, rewrite_unknown_keys
from gateway.guardrails.response_deltas import (
    DELTA_EVENT_KEYS,
    JSON_DELTAS,
    OUTPUT_TEXT_DELTA,
    Leaf,
    delta_key,
    emptied,
    grows_a_text,
    keys_of,
    string_leaves,
    with_leaf,
)
from gateway.guardrails.scanner import (
    MatchBudget,
    OutOfMatches,
    Redaction,
    Rule,
    Scanner,
    apply_redactions,
)
from gateway.guardrails.stream_values import choice_key, encode, review_value
from gateway.guardrails.texts import (
    rewrite_annotations,
    rewrite_chunk_fields,
    rewrite_error,
    rewrite_response_event,
)
from gateway.guardrails.window import CONTEXT_CHARS, advance, advance_clean
from gateway.sse import DONE_PAYLOAD, UNREADABLE, data_of, events_of, read_leniently
from gateway.stream.steps import NOTHING, Emit

# Chat delta fields that hold a text of the answer, scanned as it grows.
_DELTA_TEXTS = ("content", "refusal", "reasoning_content", "reasoning")
# Delta fields that hold texts under their own shape (read in `_pieces`, or whole).
_DELTA_SHAPED = frozenset({"audio", "function_call", "tool_calls", "annotations"})
# Delta fields that are structure, not text; any other string in a delta (`thinking`, a
# provider's own field) is a text of the answer, scanned as it grows.
_DELTA_STRUCTURE = frozenset({"role", "type", "id", "index"})
# A streamed choice's keys read as texts or structure; any other is reviewed whole.
_CHOICE_READ = frozenset({"index", "delta", "text", "finish_reason", "logprobs"})
_TEXT_PARTS = frozenset({"text", "output_text"})  # streamed content parts whose text grows


def _json(value: Any) -> bytes:
    """`value` as JSON for an event we write: orjson's, with U+2028 and U+2029 escaped
    (orjson writes them raw, and a reader that splits the stream into lines with
    Python's `str.splitlines` takes them for line ends). Only strings hold them."""
    encoded = encode(value)
    if b"\xe2\x80" in encoded:
        encoded = encoded.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
    return encoded


def _every(key: Key, text: object) -> bool:
    return True


@dataclass(slots=True)
class _Text:
    """One growing text of the answer: what is held back, and how to send the rest."""

    template: dict[str, Any]  # an event of this text, to build a flush event from
    prefix: bytes  # the event's lines before `data:` (Responses: `event: ...`)
    place: Leaf | None = None  # where it stands in a structured delta (its template's)
    pending: str = ""
    context: str = ""
    choice: Any = None  # the choice's key (`choice_key`)
    index: Any = None  # the choice's `index` as the upstream wrote it, for a flush event
    is_json: bool = False  # arguments: escapes are decoded before the window
    cut_escape: str = ""  # an escape the last piece ended inside of (is_json)
    in_string: bool = False  # `pending` begins inside a JSON string (is_json)
    # Whether the JSON text is an object or array, so its redactions keep it JSON (None:
    # nothing but whitespace yet).
    is_value: bool | None = None
    # `pending` is one bare value the text ends in (a number that may go on): a piece that
    # only makes it longer is added to `longer`, unscanned, instead of scanning the whole
    # value again each piece (quadratic); it is scanned whole once something ends it.
    bare_open: bool = False
    longer: list[str] = field(default_factory=list)
    # A text holding back more than RESCAN_FROM_CHARS (a wide pattern's match may be in
    # progress) is scanned again only once what it holds has doubled; the pieces between
    # wait in `deferred`, unscanned. Rescanning the whole hold each piece would cost the
    # rule's width per piece (a 2,000-character window, one character a piece: two
    # million characters scanned); this way each character past the threshold is scanned
    # about three times. What waits is held, never released unscanned.
    rescan_at: int = 0  # the held length (pending and deferred) to scan again at; 0: each piece
    deferred: list[str] = field(default_factory=list)
    deferred_chars: int = 0


class _WholeTexts:
    """The step's review of whole texts as the text function the readers take, with
    `lines_clean` to clear many texts in one pass (a Responses tool item's sources and
    results: answer_values.py; an object's keys: json_texts.py)."""

    __slots__ = ("step",)

    def __init__(self, step: OutputScanner) -> None:
        self.step = step

    def __call__(self, text: str) -> Sequence[Redaction]:
        return self.step._review_whole(text)

    def lines_clean(self, texts: list[str]) -> bool:
        return self.step._lines_clean(texts)


class _OverInline(Exception):
    """A chunk fed on the event loop passed INLINE_MATCHES: fed again on a thread."""


class _StreamBudget(MatchBudget):
    """The stream's matches (MAX_MATCHES in all), and, while a chunk is fed on the event
    loop, that chunk's (`inline`; None on a thread)."""

    __slots__ = ("inline",)

    def __init__(self) -> None:
        super().__init__(MAX_MATCHES)
        self.inline: int | None = None

    def spend(self, rule: Rule) -> None:
        super().spend(rule)
        if self.inline is not None:
            self.inline -= 1
            if self.inline < 0:
                raise _OverInline


@dataclass(slots=True)
class OutputScanner:
    scanner: Scanner
    endpoint: str
    hits: list[GuardrailHit]  # the request context's list: appended once per rule
    is_json: bool = False  # the request asked for JSON text (texts.asks_for_json)
    _texts: dict[Key, _Text] = field(default_factory=dict)
    # Set by the first block: from then on nothing is released (checked after each event).
    _blocked_by: Rule | None = None
    _shape: Shape | None = None
    _shapes_learned: int = 0
    _budget: _StreamBudget = field(default_factory=_StreamBudget)
    # Responses: the last `sequence_number` the client got, and how many events this step
    # added (a held text's flush), so the client's numbers go up by one an event.
    _sequence: int = -1
    _added: int = 0
    _redacted_by: Rule | None = None  # the rule of the last whole review's redaction
    # The choices (chat, completions) or texts (Responses: their keys) that ended before
    # the stream did (a `finish_reason`, a `*.done` event, an error event): any text they
    # send later is dropped.
    _ended: set[Any] = field(default_factory=set)

    def feed(self, chunk: bytes) -> Emit:
        """A chunk, on the event loop while it stays under check.py's inline budget (its
        size, INLINE_MATCHES); else an Emit whose `offload` the relay runs on a thread."""
        if len(chunk) > _ALWAYS_INLINE_BYTES and inline_weight(chunk) > INLINE_CHARS:
            return Emit(offload=partial(self._feed, chunk))
        budget = self._budget
        left, budget.inline = budget.left, INLINE_MATCHES
        try:
            return self._feed(chunk)
        except _OverInline:
            budget.left = left
            return Emit(offload=partial(self._feed, chunk))
        finally:
            budget.inline = None

    def _feed(self, chunk: bytes) -> Emit:
        """`feed`'s work, on the loop (an inline budget set: raises _OverInline past it,
        having changed nothing) or on a thread (none)."""
        try:
            if self._shape is not None:
                # Changes nothing before its one window step, which may run out of budget.
                released = self._same_shape(self._shape, chunk)
                if released is not None:
                    return self._end(b"") if self._blocked_by is not None else Emit(released)
            if self._budget.inline is None:
                return self._events(chunk)
            undo = self._snapshot()
            try:
                return self._events(chunk)
            except _OverInline:
                self._restore(undo)
                raise
        except OutOfMatches as out:
            return self._too_many(out.rule)

    def _events(self, chunk: bytes) -> Emit:
        out: list[bytes] = []
        for event in events_of(chunk):
            try:
                released = self._event(event)
            except NameNotRedactable:
                released = self._name_refused()
            if self._blocked_by is not None:
                return self._end(b"".join(out))
            out.append(released)
        data = b"".join(out)
        return Emit(data) if data else NOTHING

    def finish(self) -> Emit:
        try:
            data = self._flush(_every)
        except OutOfMatches as out:
            return self._too_many(out.rule)
        if self._blocked_by is not None:
            return self._end(b"")
        return Emit(data) if data else NOTHING

    def _end(self, released: bytes) -> Emit:
        assert self._blocked_by is not None
        return Emit(released, ContentPolicyViolation(self._blocked_by.name, on_output=True))

    def _too_many(self, rule: Rule) -> Emit:
        """The stream made MAX_MATCHES matches: it ends (as a request or answer would be
        refused), with nothing more of it sent."""
        self._blocked_by = rule
        hit = GuardrailHit(rule.name, GuardAction.BLOCK, Where.OUTPUT)
        if hit not in self.hits:
            self.hits.append(hit)
        return Emit(b"", TooManyMatches(rule.name, MAX_MATCHES, on_output=True))

    def _snapshot(self) -> tuple[Any, ...]:
        """What feeding a chunk may change, to undo it when the chunk moves to a thread."""
        texts = [
            (
                t,
                t.pending,
                t.context,
                t.cut_escape,
                t.in_string,
                t.is_value,
                t.bare_open,
                t.longer,
                len(t.longer),
                t.rescan_at,
                t.deferred,
                len(t.deferred),
                t.deferred_chars,
            )
            for t in self._texts.values()
        ]
        held = (self._blocked_by, self._shape, self._shapes_learned, len(self.hits))
        counts = (self._sequence, self._added)
        return dict(self._texts), texts, held, counts, set(self._ended)

    def _restore(self, undo: tuple[Any, ...]) -> None:
        self._texts, texts, held, (self._sequence, self._added), self._ended = undo
        for (
            text,
            pending,
            context,
            cut_escape,
            in_string,
            is_value,
            bare_open,
            longer,
            longer_count,
            rescan_at,
            deferred,
            deferred_count,
            deferred_chars,
        ) in texts:
            text.pending, text.context, text.cut_escape = pending, context, cut_escape
            text.in_string, text.is_value, text.bare_open = in_string, is_value, bare_open
            # The lists as they were: the window replaces a list it used up, never clears it.
            del longer[longer_count:]
            del deferred[deferred_count:]
            text.longer, text.deferred = longer, deferred
            text.rescan_at, text.deferred_chars = rescan_at, deferred_chars
        self._blocked_by, self._shape, self._shapes_learned, hits = held
        del self.hits[hits:]

    # --- an event of the learned shape ----------------------------------------

    def _same_shape(self, shape: Shape, chunk: bytes) -> bytes | None:
        """What to send for `chunk` when it is one event of `shape`, else None. Written
        flat (`is_plain` and the clean window step inline): it runs for nearly every
        event, and in a busy server each layer of calls is cache misses, not nanoseconds."""
        head, tail = shape.head, shape.tail
        end = len(chunk) - len(tail)
        if not chunk.startswith(head):
            return None
        if end < len(head) or not chunk.endswith(tail):
            return None if shape.mid is None else self._ending(shape, chunk)
        text = self._texts.get(shape.key)
        if text is None or text.cut_escape:
            return None
        try:
            piece = chunk[len(head) : end].decode()
        except UnicodeDecodeError:
            return None
        if not piece.isprintable() or '"' in piece or "\\" in piece:  # not `is_plain`
            return None
        clean = None
        # JSON: never cut in a number; a long hold: its pieces wait (`_Text.rescan_at`).
        if self._blocked_by is None and not text.is_json and not text.rescan_at:
            clean = advance_clean(self.scanner, text.context, text.pending + piece)
        if clean is None:
            released = self._advance(shape.key, text, piece, final=False)
        else:
            released, text.pending, text.context = clean
            if len(text.pending) > RESCAN_FROM_CHARS:
                text.rescan_at = _rescan_at(text.pending)
        if released == piece:
            return chunk
        if is_plain(released):
            return head + released.encode() + tail
        return head + _json(released)[1:-1] + tail  # held text from a parsed event

    def _ending(self, shape: Shape, chunk: bytes) -> bytes | None:
        """What to send for `chunk` when it is the event of `shape` that ends its choice,
        else None: as the parsed path sends it (the held text and S scanned and released
        whole), when this is the stream's only text (no other text of the choice to flush)."""
        assert shape.mid is not None
        head, mid, rest = shape.head, shape.mid, shape.rest
        cut = chunk.find(b'"', len(head))  # a plain S ends at the first quote
        reason_end = len(chunk) - len(rest)
        if cut < 0 or not chunk.startswith(mid, cut) or reason_end < cut + len(mid):
            return None
        if not chunk.endswith(rest) or len(self._texts) != 1:
            return None
        text = self._texts.get(shape.key)
        if text is None or text.cut_escape:
            return None
        try:
            piece = chunk[len(head) : cut].decode()
            reason = chunk[cut + len(mid) : reason_end].decode()
        except UnicodeDecodeError:
            return None
        if not (is_plain(piece) and is_plain(reason)):
            return None
        released = self._advance(shape.key, text, piece, final=True)
        self._ended.add(text.choice)
        if released == piece:
            return chunk
        encoded = released.encode() if is_plain(released) else _json(released)[1:-1]
        return head + encoded + chunk[cut:]

    def _learn(
        self,
        parsed: dict[str, Any],
        owner: dict[str, Any],
        name: str,
        key: Key,
        prefix: bytes,
        slotted: Any = SLOT,
        choice: dict[str, Any] | None = None,
    ) -> None:
        """Learn the shape of the events that follow this one (event_shape.py)."""
        if self._shapes_learned >= MAX_SHAPES_LEARNED:
            return
        self._shapes_learned += 1
        shape = learn_shape(parsed, owner, name, key, prefix, slotted, choice)
        if shape is not None:
            self._shape = shape

    # --- one event -------------------------------------------------------------

    def _event(self, event: bytes) -> bytes:
        payload = data_of(event)
        if payload is None:
            return event  # a comment (a keep-alive) carries nothing: held text stays held
        if payload == DONE_PAYLOAD:
            return self._flush(_every) + event
        prefix = event[: event.find(b"data:")]
        try:
            parsed = orjson.loads(payload)
        except orjson.JSONDecodeError:
            parsed = read_leniently(payload)
            if parsed is UNREADABLE:
                return self._flush_ended() + self._unreadable(prefix, payload, event)
        if type(parsed) is not dict:
            # Not an event any API sends, but its client may show it: every string in it
            # is reviewed whole.
            checked = self._review_json(parsed)
            if checked is parsed:
                return event
            return prefix + b"data: " + _json(checked) + b"\n\n"
        if self.endpoint == "responses":
            return self._response_event(parsed, prefix, event)
        return self._choices_event(parsed, prefix, event)

    def _choices_event(self, parsed: dict[str, Any], prefix: bytes, event: bytes) -> bytes:
        choices = parsed.get("choices")
        changed = False
        if parsed.get("usage") is not None or not CHUNK_KEYS.issuperset(parsed):
            # A top-level field that is not structure (Perplexity's `citations`), or a
            # usage: reviewed whole (an ordinary event has neither: one set check).
            fields = rewrite_chunk_fields(parsed, self._review_whole)
            if fields is not parsed:
                parsed.update(fields)
                changed = True
        if not isinstance(choices, list) or not choices:
            # No choice: a usage chunk (held text stays held), or the upstream's error
            # event (`{"error": ...}`), whose message may quote the prompt and is reviewed
            # whole; held text goes out before it, and the choices end there.
            before = self._flush_ended() if _ERROR_KEYS.intersection(parsed) else b""
            checked = rewrite_error(parsed, self._review_whole)
            if checked is parsed and not changed:
                return before + event
            return before + prefix + b"data: " + _json(checked) + b"\n\n"
        before = b""
        for position, choice in enumerate(choices):
            if type(choice) is not dict:
                continue
            as_sent = choice.get("index", position)
            index = choice_key(as_sent, position)
            ending = choice.get("finish_reason") is not None
            if choice.get("logprobs") is not None:
                choice["logprobs"] = None  # its tokens spell the text before the window
                changed = True
            changed = self._review_fields(choice) or changed
            pieces = self._pieces(index, choice)
            if index in self._ended:  # its text ended: what comes after is dropped
                for _, holder, field_name in pieces:
                    if holder[field_name]:
                        holder[field_name], changed = "", True
                pieces = []
            # A text's last piece in an ending event ends it (content parts: one text).
            last = {key: at for at, (key, _, _) in enumerate(pieces)} if ending else {}
            for at, (key, holder, field_name) in enumerate(pieces):
                text = self._texts.get(key)
                if text is None:
                    is_json = key[1] in _JSON_KEYS or (self.is_json and key[1] == "content")
                    text = self._texts[key] = _Text(
                        _template(parsed, key), prefix, choice=index, index=as_sent, is_json=is_json
                    )
                piece = holder[field_name]
                released = self._advance(key, text, piece, final=ending and last[key] == at)
                if released != piece:
                    holder[field_name] = released
                    changed = True
            delta = choice.get("delta")
            cited = isinstance(delta, dict) and "annotations" in delta
            if cited and isinstance(delta, dict):  # URL citations come whole: reviewed whole
                annotations = rewrite_annotations(delta["annotations"], self._review_whole)
                if annotations is not delta["annotations"]:
                    delta["annotations"] = annotations
                    changed = True
            if ending:
                before += self._flush(_others_of(index, {key for key, _, _ in pieces}))
                self._ended.add(index)
            elif len(choices) == 1 and len(pieces) == 1 and not cited and self._blocked_by is None:
                key, holder, field_name = pieces[0]
                if holder is choice:  # completions: the choice holds its text
                    self._learn(parsed, choice, field_name, key, prefix, choice=choice)
                elif holder is choice.get("delta"):  # chat: the role comes in the first delta only
                    delta = {k: v for k, v in holder.items() if k != "role"}
                    slotted = {**delta, field_name: SLOT}
                    self._learn(parsed, choice, "delta", key, prefix, slotted, choice)
        if not changed:
            return before + event if before else event
        return before + prefix + b"data: " + _json(parsed) + b"\n\n"

    def _pieces(self, index: Any, choice: dict[str, Any]) -> list[tuple[Key, dict[str, Any], str]]:
        """(key, the dict holding the text, its field) for each text in a choice."""
        found: list[tuple[Key, dict[str, Any], str]] = []
        if type(choice.get("text")) is str:
            found.append(((index, "text"), choice, "text"))
        delta = choice.get("delta")
        if type(delta) is not dict:
            return found
        for name in _DELTA_TEXTS:
            if type(delta.get(name)) is str:
                found.append(((index, name), delta, name))
        content = delta.get("content")
        if type(content) is list:  # parts: their texts continue the content's one text
            found.extend(((index, "content"), part, "text") for part in content if _grows(part))
        for name, value in delta.items():
            if type(value) is str and name not in _KNOWN_DELTA:
                found.append(((index, "delta", name), delta, name))
        audio = delta.get("audio")
        if type(audio) is dict and type(audio.get("transcript")) is str:
            found.append(((index, "audio"), audio, "transcript"))
        function_call = delta.get("function_call")
        if type(function_call) is dict and type(function_call.get("arguments")) is str:
            found.append(((index, "function_call"), function_call, "arguments"))
        calls = delta.get("tool_calls")
        if not calls:
            return found
        for position, call in enumerate(calls):
            if not isinstance(call, dict):
                continue
            tool = choice_key(call.get("index", position), position)
            function, custom = call.get("function"), call.get("custom")
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                found.append(((index, "tool", tool), function, "arguments"))
            if isinstance(custom, dict) and isinstance(custom.get("input"), str):
                found.append(((index, "custom", tool), custom, "input"))
        return found

    def _review_fields(self, choice: dict[str, Any]) -> bool:
        """Review whole what a choice carries beside the texts that grow (`_pieces`): a
        delta field holding an object or a list (`reasoning_details`, `thinking_blocks`),
        a content part's other keys, the choice's own unknown keys (vLLM's `stop_reason`).
        Whether it rewrote any (in place)."""
        changed = False
        delta = choice.get("delta")
        if type(delta) is dict:
            for name, value in list(delta.items()):
                if value is None or type(value) is str or name in _DELTA_STRUCTURE:
                    continue
                if name == "tool_calls":
                    checked = self._review_calls(value)
                elif name in _BESIDE_GROWN:
                    checked = self._review_beside(value, *_BESIDE_GROWN[name])
                elif name in _DELTA_SHAPED:
                    continue
                elif name == "content":
                    checked = self._review_parts(value)
                else:
                    checked = self._review_json(value)
                if checked is not value:
                    delta[name], changed = checked, True
        for name, value in list(choice.items()):
            if name not in _CHOICE_READ and value is not None:
                field = {name: value}
                checked = self._review_json(field)
                if checked is not field:
                    del choice[name]
                    choice.update(checked)
                    changed = True
        return changed

    def _review_calls(self, calls: Any) -> Any:
        """Streamed tool calls but for their structure and the texts that grow (arguments,
        custom input): the called tool's name and any key the scanner does not know,
        reviewed whole (a name a redact rule matched is redacted: a client reads it)."""
        if type(calls) is not list:
            return self._review_json(calls)
        out = []
        for call in calls:
            if type(call) is not dict:
                out.append(self._review_json(call))
                continue
            view = {k: v for k, v in call.items() if k not in _CALL_STRUCTURE}
            for name, grown in _GROWN_IN_CALL.items():
                inner = view.get(name)
                if type(inner) is dict and type(inner.get(grown)) is str:
                    view[name] = {k: v for k, v in inner.items() if k != grown}
            checked = self._review_json(view)
            if checked is view:
                out.append(call)
                continue
            # Rewritten: the structure and the growing texts go back in, as they came.
            rewritten = {k: v for k, v in call.items() if k in _CALL_STRUCTURE} | checked
            for name, grown in _GROWN_IN_CALL.items():
                inner, now = call.get(name), rewritten.get(name)
                if type(inner) is dict and type(inner.get(grown)) is str and type(now) is dict:
                    rewritten[name] = {**now, grown: inner[grown]}
            out.append(rewritten)
        return out if any(a is not b for a, b in zip(out, calls, strict=True)) else calls

    def _review_beside(self, value: Any, grown: str, kept: frozenset[str]) -> Any:
        """A delta's `function_call` or `audio` but for the text that grows in it (its
        arguments, its transcript: `_pieces`) and the keys `kept` (audio's id, base64
        `data` and expiry): the called function's name and any other key, reviewed whole
        (a name a redact rule matched is redacted, as a tool call's is)."""
        if type(value) is not dict:
            return self._review_json(value)
        view = {
            k: v for k, v in value.items() if k not in kept and not (k == grown and type(v) is str)
        }
        if not view:
            return value
        checked = self._review_json(view)
        if checked is view:
            return value
        # Rewritten: what was set aside goes back in, as it came.
        return {k: v for k, v in value.items() if k not in view} | checked

    def _review_parts(self, parts: Any) -> Any:
        """Streamed content parts but for the texts that grow: every other string."""
        if type(parts) is not list:
            return self._review_json(parts)
        out = []
        for part in parts:
            if _grows(part):
                rest = {k: v for k, v in part.items() if k not in ("text", "type")}
                checked = self._review_json(rest)
                out.append(part if checked is rest else {**part, **checked})
            else:
                out.append(self._review_json(part))
        return out if any(a is not b for a, b in zip(out, parts, strict=True)) else parts

    def _response_event(self, parsed: dict[str, Any], prefix: bytes, event: bytes) -> bytes:
        kind = parsed.get("type")
        dropped = bool(parsed.get("logprobs"))
        if dropped:
            parsed["logprobs"] = []  # its tokens spell the text before the window
        delta = parsed.get("delta")
        if grows_a_text(kind, delta):
            if not DELTA_EVENT_KEYS.issuperset(parsed):  # a provider's own field: whole
                fields = rewrite_unknown_keys(DELTA_EVENT_KEYS, parsed, self._review_whole)
                if fields is not parsed:
                    parsed.update(fields)
                    dropped = True  # written again
            if type(delta) is not str:
                return self._named_texts(kind, parsed, delta, prefix, event, changed=dropped)
            key = delta_key(kind, parsed)
            if key in self._ended:  # its text ended: what comes after is dropped
                parsed["delta"] = ""
                self._renumber(parsed)
                return prefix + b"data: " + _json(parsed) + b"\n\n"
            text = self._texts.get(key)
            if text is None:
                is_json = kind in JSON_DELTAS or (self.is_json and kind == OUTPUT_TEXT_DELTA)
                text = self._texts[key] = _Text(dict(parsed), prefix, is_json=is_json)
            released = self._advance(key, text, parsed["delta"], final=False)
            if self._blocked_by is None and "sequence_number" not in parsed:  # counts up
                self._learn(parsed, parsed, "delta", key, prefix)
            renumbered = self._renumber(parsed)
            if released == parsed["delta"] and not (dropped or renumbered):
                return event
            parsed["delta"] = released
            return prefix + b"data: " + _json(parsed) + b"\n\n"
        # Any other event (a delta that is not a string too: reviewed whole): the texts it
        # ends end here (none for an event in between, such as an annotation added), then
        # whole texts and every other string but the structure are reviewed.
        before = self._end_texts(parsed)
        rewritten = rewrite_response_event(parsed, _WholeTexts(self), is_json=self.is_json)
        if rewritten is not parsed:
            rewritten = dict(rewritten)
        renumbered = self._renumber(rewritten)
        if rewritten is parsed and not (dropped or renumbered):
            return before + event
        return before + prefix + b"data: " + _json(rewritten) + b"\n\n"

    def _named_texts(
        self,
        kind: object,
        parsed: dict[str, Any],
        delta: Any,
        prefix: bytes,
        event: bytes,
        *,
        changed: bool,
    ) -> bytes:
        """A structured delta (a shell call's `stdout` and `stderr`, a list): each string
        in it its own growing text, held back and scanned like any other; its keys are
        reviewed whole, and a key a rule matches has the whole delta reviewed so."""
        leaves = string_leaves(delta) or []
        keys = keys_of(delta)
        if keys and not self._lines_clean(keys):
            parsed["delta"] = self._review_json(delta)
            self._renumber(parsed)
            return prefix + b"data: " + _json(parsed) + b"\n\n"
        released = delta
        for place, piece in leaves:
            key = delta_key(kind, parsed, place)
            if key in self._ended:  # its text ended: what comes after is dropped
                out = ""
            else:
                text = self._texts.get(key)
                if text is None:
                    template = {**parsed, "delta": emptied(delta)}
                    text = self._texts[key] = _Text(template, prefix, place=place)
                out = self._advance(key, text, piece, final=False)
            if out != piece:
                released, changed = with_leaf(released, place, out), True
        renumbered = self._renumber(parsed)
        if not (changed or renumbered):
            return event
        parsed["delta"] = released
        return prefix + b"data: " + _json(parsed) + b"\n\n"

    def _renumber(self, event: dict[str, Any]) -> bool:
        """Number a Responses event after the events this step added (whether its number
        changed), and note it as the last the client got."""
        number = event.get("sequence_number")
        if type(number) is not int:
            return False
        self._sequence = number + self._added
        if not self._added:
            return False
        event["sequence_number"] = self._sequence
        return True

    # --- the window ------------------------------------------------------------

    def _advance(self, key: Key, text: _Text, piece: str, *, final: bool) -> str:
        if self._blocked_by is not None:
            return ""
        if text.rescan_at:
            held = len(text.pending) + text.deferred_chars + len(piece)
            if not final and held < text.rescan_at:
                text.deferred.append(piece)  # held until the hold doubles (`rescan_at`)
                text.deferred_chars += len(piece)
                return ""
            if text.deferred:  # the pieces as one, as if they had come together
                piece = "".join(text.deferred) + piece
        # The step changes nothing when it raises (a chunk moved to a thread is fed again).
        if text.is_json:
            released = self._advance_json(key, text, piece, final=final)
        else:
            released = self._advance_text(key, text, piece, final=final)
        if text.deferred:
            text.deferred, text.deferred_chars = [], 0  # a new list: `_restore` keeps the old
        text.rescan_at = _rescan_at(text.pending)
        return released

    def _advance_text(self, key: Key, text: _Text, piece: str, *, final: bool) -> str:
        """`_advance` for a text that is not JSON: the window step on what it holds and `piece`."""
        step = advance(
            self.scanner, text.context, text.pending + piece, final=final, budget=self._budget
        )
        if step.fired:
            self._record(step.fired)
        if step.blocked_by is not None:
            self._blocked_by = step.blocked_by
            return ""
        text.pending, text.context = step.keep, step.context
        if final:
            del self._texts[key]
        return step.release

    def _advance_json(self, key: Key, text: _Text, piece: str, *, final: bool) -> str:
        """`_advance` for arguments: `pending` is held as written, the window sees it as
        its reader will (every escape decoded), and what is released goes as written, a
        redaction written in (json_escapes.py). An escape cut at the end waits."""
        if text.bare_open and not final and not text.cut_escape and extends_bare(piece):
            text.longer.append(piece)  # held whole anyway: scanned once it ends
            return ""
        if text.longer:
            text.pending += "".join(text.longer)
            text.longer = []  # a new list: a snapshot keeps the old one (`_restore`)
        whole = text.cut_escape + piece
        cut_escape = ""
        if not final:
            whole, cut_escape = split_incomplete(whole)
        source = text.pending + whole
        layout = _layout(text, source)
        read_as = layout.numbers_read(source, final) if layout is not None else None
        escaped = Escaped(source, read_as)
        step = advance(self.scanner, text.context, escaped.view, final=final, budget=self._budget)
        if step.fired:
            self._record(step.fired)
        if step.blocked_by is not None:
            self._blocked_by = step.blocked_by
            return ""
        cut = len(escaped.view) - len(step.keep)
        spans, context = step.redactions, step.context
        if layout is not None and not final:
            held = _whole_values_cut(escaped, layout, cut, spans)
            if held < cut:  # held back to the start of a value a redaction may replace whole
                spans = [span for span in spans if span[1] <= held]
                context = (text.context + escaped.view[:held])[-CONTEXT_CHARS:]
                cut = held
        released = escaped.redacted(spans, cut, layout)
        source_cut = escaped.source_position(cut)
        text.pending = escaped.source[source_cut:]
        text.in_string = layout is not None and layout.in_string_at(source_cut)
        text.bare_open = layout is not None and layout.bare_around(layout.length) == source_cut
        text.context, text.cut_escape = context, cut_escape
        if final:
            del self._texts[key]
        return released

    def _flush(self, which: Callable[[Key, _Text], bool]) -> bytes:
        """Release the held text of the texts `which` selects, each in an event of its own."""
        out: list[bytes] = []
        for key, text in list(self._texts.items()):
            if not which(key, text):
                continue
            released = self._advance(key, text, "", final=True)
            if released:
                if self.endpoint == "responses":
                    delta = text.template["delta"]
                    if text.place is not None:
                        delta = with_leaf(delta, text.place, released)
                    else:
                        delta = released
                    event = {**text.template, "delta": delta}
                else:
                    event = _with_text(text.template, key, released, text.index)
                if "sequence_number" in event:  # an event more: numbered after the last
                    self._sequence += 1
                    self._added += 1
                    event["sequence_number"] = self._sequence
                out.append(text.prefix + b"data: " + _json(event) + b"\n\n")
        return b"".join(out)

    def _end_texts(self, event: dict[str, Any]) -> bytes:
        """Release the held text of the Responses texts `event` ends: a `*.done` event's
        item's (every text when it names none), every text at the response's end or an
        error; those texts end (`_ended`). Any other event ends none: released there, a
        text's held piece would leave the next delta a fresh window."""
        kind = event.get("type")
        if type(kind) is not str or kind.endswith(".done"):
            item = event.get("item_id")
            inner = event.get("item")
            if item is None and type(inner) is dict:
                item = inner.get("id")
            if type(item) is str:
                # A text keyed by its output index (its deltas named no item) ends there too.
                place = event.get("output_index")
                marks = {item} if type(place) is not int else {item, place}
                ends = [key for key in self._texts if key[1] in marks]
                self._ended.update(ends)
                return self._flush(lambda key, text: key in ends)
        elif kind not in _RESPONSE_ENDS:
            return b""
        self._ended.update(self._texts)
        return self._flush(_every)

    def _flush_ended(self) -> bytes:
        """Release every held text before the stream's end (an error event, data no
        reader takes): their choices end here (`_ended`)."""
        self._ended.update(text.choice for text in self._texts.values())
        return self._flush(_every)

    def _review_json(self, value: Any) -> Any:
        """A value that comes whole (no growing text), every string and key in it."""
        return review_value(value, self._review_whole)

    def _unreadable(self, prefix: bytes, payload: bytes, event: bytes) -> bytes:
        """An event whose data is no JSON: no client reads it as an event, but one may
        show it, so it is reviewed whole as text (redacted, it stays text)."""
        text = payload.decode("utf-8", "replace")
        spans = self._review_whole(text)
        if not spans:
            return event
        lines = apply_redactions(text, spans).split("\n")
        return prefix + b"".join(b"data: " + line.encode() + b"\n" for line in lines) + b"\n"

    def _lines_clean(self, texts: list[str]) -> bool:
        """Whether no rule matches any of `texts`, each alone (scanner.lines_clean)."""
        return self._blocked_by is not None or self.scanner.lines_clean(texts)

    def _review_whole(self, whole: str) -> Sequence[Redaction]:
        if self._blocked_by is not None:
            return ()  # not sent: the step ends after this event
        result = review(self.scanner, whole, self._budget)
        self._record(result.fired)
        self._blocked_by = result.blocked_by
        if result.redactions:
            self._redacted_by = next(r for r in result.fired if r.action is GuardAction.REDACT)
        return result.redactions

    def _name_refused(self) -> bytes:
        """A redact rule matched a name in a value read whole (json_texts.check_name: a
        text an object holds where a string was due): the event cannot be sent redacted,
        so the stream ends as that rule's block would, with nothing of the event sent."""
        assert self._redacted_by is not None  # check_name raises only after a redaction
        self._blocked_by = self._redacted_by
        hit = GuardrailHit(self._redacted_by.name, GuardAction.BLOCK, Where.OUTPUT)
        if hit not in self.hits:
            self.hits.append(hit)
        return b""

    def _record(self, fired: tuple[Rule, ...]) -> None:
        for rule in fired:
            hit = GuardrailHit(rule.name, rule.action, Where.OUTPUT)
            if hit not in self.hits:
                self.hits.append(hit)


# A chunk this small is under INLINE_CHARS even if every byte weighs NON_ASCII_WEIGHT.
_ALWAYS_INLINE_BYTES = INLINE_CHARS // NON_ASCII_WEIGHT
RESCAN_FROM_CHARS = 256  # a text holding back more (a wide window) waits to double before a rescan
_ERROR_KEYS = frozenset({"error", "message", "detail"})  # what rewrite_error reads
# Responses events that end every text (and `*.done` events, each its item's).
_RESPONSE_ENDS = frozenset({"response.completed", "response.failed", "response.incomplete"})
_RESPONSE_ENDS |= {"error"}
_JSON_KEYS = frozenset({"tool", "function_call"})  # chat keys whose text is arguments
_KNOWN_DELTA = frozenset({*_DELTA_TEXTS, *_DELTA_SHAPED, *_DELTA_STRUCTURE})
# A streamed tool call: its structure, and the text of each part that grows (`_pieces`).
_CALL_STRUCTURE = frozenset({"index", "id", "type"})
_GROWN_IN_CALL = {"function": "arguments", "custom": "input"}
# Delta objects with a text that grows in them, and the keys in them that hold no text.
_BESIDE_GROWN = {
    "function_call": ("arguments", frozenset[str]()),
    "audio": ("transcript", frozenset({"id", "data", "expires_at"})),
}


def _rescan_at(pending: str) -> int:
    """`_Text.rescan_at` for a text that now holds `pending`."""
    return 2 * len(pending) if len(pending) > RESCAN_FROM_CHARS else 0


def _grows(part: Any) -> bool:
    """Whether a streamed content part's text continues the choice's content (a text
    part's); any other part is reviewed whole."""
    if type(part) is not dict or type(part.get("text")) is not str:
        return False
    kind = part.get("type")
    return kind is None or (type(kind) is str and kind in _TEXT_PARTS)


def _layout(text: _Text, source: str) -> Layout | None:
    """The layout of the held JSON text and what came, when the text is an object or an
    array (arguments that are not JSON are redacted as they are)."""
    if text.is_value is None:
        start = source.lstrip()[:1]
        if not start:
            return None
        text.is_value = start in "{["
    return Layout(source, text.in_string) if text.is_value else None


def _whole_values_cut(
    escaped: Escaped, layout: Layout, cut: int, spans: Sequence[Redaction]
) -> int:
    """`cut` (a view position), moved back so that it cuts no bare value (a number that
    may go on, or that a redaction replaces whole) and no redaction."""
    while True:
        moved = cut
        start = layout.bare_around(escaped.source_position(cut))
        if start is not None:
            moved = escaped.view_position(start)
        for begin, end, _ in spans:
            if begin < moved < end:
                moved = begin
                break
        if moved == cut:
            return cut
        cut = moved


def _others_of(choice: Any, seen: set[Key]) -> Callable[[Key, _Text], bool]:
    """The texts of `choice` that the ending event did not carry."""

    def which(key: Key, text: _Text) -> bool:
        return text.choice == choice and key not in seen

    return which


def _template(parsed: Mapping[str, Any], key: Key) -> dict[str, Any]:
    """The event's envelope (id, model, created, ...) without its choices or usage."""
    return {k: v for k, v in parsed.items() if k not in ("choices", "usage")}


def _with_text(template: dict[str, Any], key: Key, text: str, index: Any) -> dict[str, Any]:
    """A chat or completions event carrying `text` for the text `key` names, in the
    template's image, for the choice `index` (as the upstream wrote it)."""
    if key[1] == "text":
        choice: dict[str, Any] = {"index": index, "text": text, "finish_reason": None}
    elif key[1] in _DELTA_TEXTS:
        choice = {"index": index, "delta": {key[1]: text}, "finish_reason": None}
    elif key[1] == "delta":  # a delta field of a name the scanner does not know
        choice = {"index": index, "delta": {key[2]: text}, "finish_reason": None}
    elif key[1] == "audio":
        choice = {"index": index, "delta": {"audio": {"transcript": text}}, "finish_reason": None}
    elif key[1] == "function_call":
        delta = {"function_call": {"arguments": text}}
        choice = {"index": index, "delta": delta, "finish_reason": None}
    elif key[1] == "custom":
        call = {"index": key[2], "custom": {"input": text}}
        choice = {"index": index, "delta": {"tool_calls": [call]}, "finish_reason": None}
    else:
        call = {"index": key[2], "function": {"arguments": text}}
        choice = {"index": index, "delta": {"tool_calls": [call]}, "finish_reason": None}
    return {**template, "choices": [choice]}
