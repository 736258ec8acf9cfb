"""The output scanner step on bytes: matches split at every offset, blocks that leak nothing."""

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.guardrails.kinds import DetectorKind, GuardAction, Where
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from gateway.guardrails.stream_scanner import MAX_SHAPES_LEARNED, OutputScanner
from gateway.stream.steps import Chain

CARD = "4111 1111 1111 1111"
KEY = "AKIAZ7Q2W9X4C6V8B1N3"
REDACT_CARDS = Scanner(
    [RuleSource(Rule("credit_card", DetectorKind.CREDIT_CARD, GuardAction.REDACT))]
)
BLOCK_KEYS = Scanner(
    [
        RuleSource(Rule("credit_card", DetectorKind.CREDIT_CARD, GuardAction.REDACT)),
        RuleSource(Rule("leak", DetectorKind.PATTERN, GuardAction.BLOCK), r"AKIA[A-Z0-9]{16}"),
    ]
)


def chat_event(content=None, finish=None, tool_args=None) -> bytes:
    delta = {}
    if content is not None:
        delta["content"] = content
    if tool_args is not None:
        delta["tool_calls"] = [{"index": 0, "function": {"arguments": tool_args}}]
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def run(
    scanner: Scanner, endpoint: str, events: list[bytes], *, learn: bool = True
) -> tuple[bytes, object, list]:
    """The events through the step; `learn=False`: every event parsed (the reference)."""
    hits: list = []
    step = OutputScanner(scanner, endpoint, hits)
    if not learn:
        step._shapes_learned = MAX_SHAPES_LEARNED
    chain = Chain([step])
    out = b""
    for event in events:
        emit = chain.feed(event)
        if emit.offload is not None:  # as the relay does, on a thread
            emit = emit.offload()
        out += emit.data
        if emit.end is not None:
            return out, emit.end, hits
    emit = chain.finish()
    return out + emit.data, emit.end, hits


def chat_text(out: bytes, field: str = "content") -> str:
    text = ""
    for line in out.split(b"\n\n"):
        if not line.startswith(b"data: {"):
            continue
        delta = orjson.loads(line[6:])["choices"][0].get("delta") or {}
        if field == "content":
            text += delta.get("content") or ""
        else:
            for call in delta.get("tool_calls") or ():
                text += call["function"].get("arguments") or ""
    return text


SENTENCE = f"Card {CARD} is on file."


@pytest.mark.parametrize("split", range(1, len(SENTENCE)))
def test_a_card_split_at_any_offset_is_redacted(split):
    """Two content events cut anywhere: the client gets the redacted text, in order."""
    events = [
        chat_event(SENTENCE[:split]),
        chat_event(SENTENCE[split:]),
        chat_event(finish="stop"),
        b"data: [DONE]\n\n",
    ]
    out, end, hits = run(REDACT_CARDS, "chat", events)
    assert end is None
    assert chat_text(out) == "Card [REDACTED:credit_card] is on file."
    assert b"1111" not in out
    assert out.endswith(b"data: [DONE]\n\n")
    assert [(h.rule, h.action, h.where) for h in hits] == [("credit_card", "redact", Where.OUTPUT)]


@pytest.mark.parametrize("split", range(1, len(KEY) + 10))
def test_a_blocked_key_split_anywhere_leaks_no_byte_of_it(split):
    """A block ends the stream with an error event; no part of the key was released."""
    text = f"use {KEY} now, " + "then carry on with a long explanation " * 3
    events = [chat_event(text[:split]), chat_event(text[split:]), chat_event(finish="stop")]
    out, end, _ = run(BLOCK_KEYS, "chat", events)
    assert end is not None and end.code == "content_policy_violation" and "'leak'" in end.message
    assert all(KEY[i : i + 4].encode() not in out for i in range(len(KEY) - 3))


def test_one_character_per_event():
    """The worst case: every character its own event."""
    events = [chat_event(c) for c in SENTENCE] + [chat_event(finish="stop")]
    out, end, _ = run(REDACT_CARDS, "chat", events)
    assert end is None and chat_text(out) == "Card [REDACTED:credit_card] is on file."


def test_tool_call_arguments_are_scanned_across_events():
    args = '{"card": "' + CARD + '"}'
    events = [
        chat_event(tool_args=args[:12]),
        chat_event(tool_args=args[12:]),
        chat_event(finish="tool_calls"),
    ]
    out, _, _ = run(REDACT_CARDS, "chat", events)
    assert chat_text(out, "tool") == '{"card": "[REDACTED:credit_card]"}'


def test_held_text_is_released_at_the_end_of_a_stream_without_finish():
    """An upstream that just stops: finish() releases the held text, scanned."""
    out, end, _ = run(REDACT_CARDS, "chat", [chat_event(f"pay {CARD}")])
    assert end is None and chat_text(out) == "pay [REDACTED:credit_card]"


def test_events_without_text_pass_through_unchanged():
    role = b'data: {"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
    usage = b'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n'
    out, _, _ = run(REDACT_CARDS, "chat", [role, usage, b"data: [DONE]\n\n"])
    assert out == role + usage + b"data: [DONE]\n\n"


def test_completions_text_is_scanned():
    def event(text, finish=None):
        return (
            b"data: "
            + orjson.dumps({"choices": [{"index": 0, "text": text, "finish_reason": finish}]})
            + b"\n\n"
        )

    out, _, _ = run(
        REDACT_CARDS,
        "completions",
        [event("a 4111 1111 "), event("1111 1111 b"), event("", "stop")],
    )
    texts = "".join(
        orjson.loads(x[6:])["choices"][0]["text"]
        for x in out.split(b"\n\n")
        if x.startswith(b"data: {")
    )
    assert texts == "a [REDACTED:credit_card] b"


def test_responses_deltas_and_done_events_are_redacted():
    def event(kind, **fields):
        return (
            f"event: {kind}\n".encode()
            + b"data: "
            + orjson.dumps({"type": kind, **fields})
            + b"\n\n"
        )

    at = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    events = [
        event("response.output_text.delta", delta="card 4111 1111", **at),
        event("response.output_text.delta", delta=" 1111 1111 ok", **at),
        event("response.output_text.done", text=f"card {CARD} ok", **at),
        event(
            "response.completed",
            response={
                "output": [
                    {
                        "type": "message",
                        "content": [{"type": "output_text", "text": f"card {CARD} ok"}],
                    }
                ]
            },
        ),
    ]
    out, end, _ = run(REDACT_CARDS, "responses", events)
    assert end is None and b"1111" not in out
    deltas = [
        orjson.loads(x.split(b"data: ")[1]) for x in out.split(b"\n\n") if b"output_text.delta" in x
    ]
    assert "".join(d["delta"] for d in deltas) == "card [REDACTED:credit_card] ok"
    assert out.count(b"[REDACTED:credit_card]") == 3
    assert all(x.startswith(b"event: ") for x in out.split(b"\n\n") if x)


BASELINE = Scanner(
    [
        RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK)),
        RuleSource(Rule("email", DetectorKind.EMAIL, GuardAction.REDACT)),
        RuleSource(Rule("credit_card", DetectorKind.CREDIT_CARD, GuardAction.REDACT)),
    ]
)


def test_clean_prose_flows_event_by_event_with_secrets_on_output():
    """The baseline profile's longest match is a 4 KB PEM block; a clean answer still goes
    out as it comes: each event releases all but (at most) its unfinished last word."""
    words = ("Paris is the capital of France, and it has been for a long time. " * 30).split()
    hits: list = []
    scanner = OutputScanner(BASELINE, "chat", hits)
    sent = ""
    received = ""
    for word in words:
        received += word + " "
        emit = scanner.feed(chat_event(word + " "))
        sent += chat_text(emit.data)
        assert len(received) - len(sent) <= len(word) + 1
    assert sent == received  # every token ends in a space: nothing could be in progress
    assert hits == []


def test_a_key_prefix_is_held_and_released_when_it_turns_out_harmless():
    scanner = OutputScanner(BASELINE, "chat", [])
    assert chat_text(scanner.feed(chat_event("Prefix keys with sk-")).data) == "Prefix keys with "
    assert chat_text(scanner.feed(chat_event("like this. ")).data) == "sk-like this. "


PEM_ANSWER = (
    "Here is the key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7Zq3xQ\n"
    "-----END RSA PRIVATE KEY-----\nKeep it safe."
)


@pytest.mark.parametrize("split", range(1, len(PEM_ANSWER)))
def test_a_private_key_block_split_anywhere_leaks_no_byte_of_it(split):
    events = [chat_event(PEM_ANSWER[:split]), chat_event(PEM_ANSWER[split:])]
    out, end, _ = run(BASELINE, "chat", [*events, chat_event(finish="stop")])
    assert end is not None and end.code == "content_policy_violation"
    assert b"-----" not in out and b"MIIE" not in out and b"BEGIN" not in out
    assert chat_text(out) in "Here is the key:\n"


def response_event(kind: str, **fields) -> bytes:
    return (
        f"event: {kind}\n".encode() + b"data: " + orjson.dumps({"type": kind, **fields}) + b"\n\n"
    )


@pytest.mark.parametrize("split", range(1, 40))
def test_responses_function_call_arguments_are_redacted_split_anywhere(split):
    """A Responses tool call streams its arguments as deltas, then repeats them whole in
    `.done`, `output_item.done` and `response.completed`: every copy is redacted."""
    args = '{"to": "jane.doe@corp.example.com", "card": "' + CARD + '"}'
    at = {"item_id": "fc_1", "output_index": 0}
    item = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "pay"}
    events = [
        response_event("response.output_item.added", item={**item, "arguments": ""}, **at),
        response_event("response.function_call_arguments.delta", delta=args[:split], **at),
        response_event("response.function_call_arguments.delta", delta=args[split:], **at),
        response_event("response.function_call_arguments.done", arguments=args, **at),
        response_event("response.output_item.done", item={**item, "arguments": args}, **at),
        response_event("response.completed", response={"output": [{**item, "arguments": args}]}),
    ]
    out, end, hits = run(BASELINE, "responses", events)
    assert end is None
    assert b"1111" not in out and b"jane.doe" not in out
    redacted = '{"to": "[REDACTED:email]", "card": "[REDACTED:credit_card]"}'
    parsed = [orjson.loads(x.split(b"data: ")[1]) for x in out.split(b"\n\n") if x]
    deltas = [p["delta"] for p in parsed if p["type"].endswith("arguments.delta")]
    assert "".join(deltas) == redacted
    done = next(p for p in parsed if p["type"] == "response.function_call_arguments.done")
    assert done["arguments"] == redacted
    item_done = next(p for p in parsed if p["type"] == "response.output_item.done")
    assert item_done["item"]["arguments"] == redacted
    completed = next(p for p in parsed if p["type"] == "response.completed")
    assert completed["response"]["output"][0]["arguments"] == redacted
    assert {(h.rule, h.where) for h in hits} == {
        ("email", Where.OUTPUT),
        ("credit_card", Where.OUTPUT),
    }


def test_one_read_of_many_events_releases_what_event_by_event_reads_release():
    """A read of one event takes a shorter path than a read of several; both send the same."""
    words = ["Mail", " jane.", "doe@corp.", "example.com", " or pay", " 4111 1111", " 1111 1111"]
    events = [chat_event(w) for w in words] + [chat_event(finish="stop"), b"data: [DONE]\n\n"]
    one_by_one, end, hits = run(BASELINE, "chat", events)
    together, end_together, hits_together = run(BASELINE, "chat", [b"".join(events)])
    assert end is None and end_together is None
    assert together == one_by_one
    assert hits == hits_together
    assert chat_text(one_by_one) == "Mail [REDACTED:email] or pay [REDACTED:credit_card]"


def test_an_unchanged_event_is_sent_as_its_original_bytes():
    """Text released as it came goes out in the upstream's own bytes (spacing, key order)."""
    event = b'data: {"choices": [{"delta": {"content": "Hi. "}, "index": 0}], "id": "c1"}\n\n'
    out, end, _ = run(BASELINE, "chat", [event])
    assert end is None and out == event


# --- events of a learned shape: scanned without a parse, sent as the parse would -------

PIECES = st.lists(
    st.one_of(
        st.sampled_from(
            [
                " jane",
                ".doe@",
                "corp.example",
                ".com",
                " 4111 1111",
                " 1111 1111",
                " AKIA",
                "Z7Q2W9X4C6V8B1N3",
                ' "quoted"',
                " back\\slash",
                " tab\there",
                " nul\x00",
                " caf\u00e9",
                " nbsp\u00a0",
                " \u2028",
                " \x7f",
                "\x00slot\x00",
                "",
                " ok",
            ]
        ),
        st.text(max_size=12),
    ),
    max_size=14,
)


def _comparable(result: tuple[bytes, object, list]) -> tuple[bytes, object, list]:
    out, end, hits = result
    return out, None if end is None else (type(end), str(end)), hits


def _parsed_only(
    scanner: Scanner, endpoint: str, events: list[bytes]
) -> tuple[bytes, object, list]:
    return run(scanner, endpoint, events, learn=False)


def _openai_chat(pieces: list[str], *, role_first: bool) -> list[bytes]:
    """OpenAI's own chunk layout: the role in the first delta only, `usage: null`."""
    events = []
    for position, piece in enumerate(pieces):
        delta = (
            {"role": "assistant", "content": piece}
            if role_first and position == 0
            else {"content": piece}
        )
        chunk = {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
            "usage": None,
        }
        events.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    return [*events, chat_event(finish="stop"), b"data: [DONE]\n\n"]


@settings(max_examples=300, deadline=None)
@given(pieces=PIECES, role_first=st.booleans())
def test_a_learned_shape_sends_what_parsing_every_event_sends(pieces, role_first):
    """Chat events alike but for their text skip the parse once the first is learned:
    the bytes out, the end and the hits are those of the parsed path, whatever the text
    (quotes, backslashes, control characters, non-ASCII, our own slot marker)."""
    for scanner in (BASELINE, BLOCK_KEYS):
        events = _openai_chat(pieces, role_first=role_first)
        expected = _comparable(_parsed_only(scanner, "chat", events))
        assert _comparable(run(scanner, "chat", events)) == expected


@settings(max_examples=100, deadline=None)
@given(pieces=PIECES)
def test_completions_text_of_a_learned_shape_matches_the_parsed_path(pieces):
    events = []
    for piece in pieces:
        chunk = {
            "id": "c",
            "object": "text_completion",
            "choices": [{"index": 0, "text": piece, "logprobs": None, "finish_reason": None}],
        }
        events.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    expected = _comparable(_parsed_only(BASELINE, "completions", events))
    assert _comparable(run(BASELINE, "completions", events)) == expected


def test_an_event_unlike_the_learned_shape_is_parsed():
    """Same text slot, different envelope (another choice, a finish, a longer id): each is
    parsed, and the texts still come out redacted."""
    first = _openai_chat([" write to jane", ".doe@corp"], role_first=True)[:2]
    other_choice = first[1].replace(b'"index":0', b'"index":1')
    longer_id = first[1].replace(b'"id":"c1"', b'"id":"c12"')
    tail = [chat_event(".example.com", finish="stop"), b"data: [DONE]\n\n"]
    events = [*first, other_choice, longer_id, *tail]
    out, end, hits = run(BASELINE, "chat", events)
    assert _comparable((out, end, hits)) == _comparable(_parsed_only(BASELINE, "chat", events))
    assert b"jane" not in out and b"[REDACTED:email]" in out


def test_a_text_key_written_with_escapes_is_still_scanned():
    """`"\\u0063ontent"` is `"content"` to every JSON parser: no byte check may skip it."""
    event = (
        b'data: {"id":"c1","choices":[{"index":0,"delta":{"\\u0063ontent":"pay '
        + CARD.encode()
        + b'"},"finish_reason":null}]}\n\n'
    )
    out, end, hits = run(REDACT_CARDS, "chat", [event, chat_event(finish="stop")])
    assert end is None and CARD.encode() not in out and b"[REDACTED:credit_card]" in out
    assert [h.rule for h in hits] == ["credit_card"]


@settings(max_examples=100, deadline=None)
@given(pieces=PIECES, numbered=st.booleans())
def test_responses_deltas_of_a_learned_shape_match_the_parsed_path(pieces, numbered):
    """Responses text deltas, with or without OpenAI's `sequence_number` (which makes no
    two events alike): the same bytes, end and hits as parsing every event."""

    def event(kind: str, number: int, **fields: object) -> bytes:
        body = {"type": kind, **({"sequence_number": number} if numbered else {}), **fields}
        return f"event: {kind}\n".encode() + b"data: " + orjson.dumps(body) + b"\n\n"

    at = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    events = [
        event("response.output_text.delta", n, delta=piece, **at) for n, piece in enumerate(pieces)
    ]
    events.append(event("response.output_text.done", len(pieces), text="".join(pieces), **at))
    for scanner in (BASELINE, BLOCK_KEYS):
        expected = _comparable(_parsed_only(scanner, "responses", events))
        assert _comparable(run(scanner, "responses", events)) == expected


def _chat_ending_in_text(
    pieces: list[str], reason: str, *, reason_first: bool, tool_text: str | None, last: str = "!"
) -> list[bytes]:
    """OpenAI-like chunks whose last one carries text and the finish reason (as vLLM and
    the benchmark's mock send it), optionally with the reason written before the delta,
    and optionally with a tool call's arguments in the first event (a second text)."""
    events = []
    for position, piece in enumerate([*pieces, last]):
        ending = position == len(pieces)
        delta: dict = {"content": piece}
        if tool_text is not None and position == 0:
            delta["tool_calls"] = [{"index": 0, "function": {"arguments": tool_text}}]
        choice: dict = {"finish_reason": reason if ending else None} if reason_first else {}
        choice |= {"index": 0, "delta": delta, "logprobs": None}
        if not reason_first:
            choice["finish_reason"] = reason if ending else None
        chunk = {"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}
        events.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    return [*events, b"data: [DONE]\n\n"]


@settings(max_examples=300, deadline=None)
@given(
    pieces=PIECES,
    reason=st.one_of(
        st.sampled_from(["stop", "length", "tool_calls", "", 'st"op', "st\\op", "fin\u00e9"]),
        st.text(max_size=6),
    ),
    reason_first=st.booleans(),
    tool_text=st.one_of(
        st.none(), st.sampled_from(["{}", '{"to": "jane', '{"card": "4111 1111 1111 1111"}'])
    ),
    last=st.sampled_from([" jane", ".doe@corp.example", " 1111", " AKIA", "!", "", ' "q"']),
)
def test_an_ending_of_the_learned_shape_sends_what_parsing_it_sends(
    pieces, reason, reason_first, tool_text, last
):
    """The event that ends the choice, alike but for its text and finish reason, skips the
    parse when it is the stream's only text: the bytes, end and hits of the parsed path
    (whatever the reason's spelling, wherever the reason is written, with another text)."""
    for scanner in (BASELINE, BLOCK_KEYS):
        events = _chat_ending_in_text(
            pieces, reason, reason_first=reason_first, tool_text=tool_text, last=last
        )
        expected = _comparable(_parsed_only(scanner, "chat", events))
        assert _comparable(run(scanner, "chat", events)) == expected


def test_a_card_split_into_the_ending_event_is_redacted_without_a_parse():
    """The held start of a card and its end in the ending event: redacted, and the ending
    event of the learned shape was not parsed (it came through `_ending`)."""
    events = _chat_ending_in_text(
        [" pay", " 4111 1111", " 1111"], "stop", reason_first=False, tool_text=None, last=" 1111"
    )
    hits: list = []
    step = OutputScanner(REDACT_CARDS, "chat", hits)
    out = b"".join(step.feed(e).data for e in events[:-1])
    assert not step._texts  # the ending event released the text: no flush at [DONE]
    assert out.endswith(
        b'{"content":"[REDACTED:credit_card]"},"logprobs":null,"finish_reason":"stop"}]}\n\n'
    )
    assert step._shape is not None and step._shape.mid is not None
