"""The usage step (gateway/stream/usage_observer.py), on bytes: what the client gets
and what usage is learned, however the upstream's reads cut the stream."""

from __future__ import annotations

import orjson
import pytest

from gateway.limits.token_count import count_text
from gateway.sse import EventSplitter, events_of, json_of
from gateway.stream.usage_observer import UsageObserver
from gateway.usage.usage import Usage

USAGE = {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]}


def chunk(delta: str | None, *, spaced: bool = False, usage: object = None) -> bytes:
    payload: dict[str, object] = {"id": "c1", "object": "chat.completion.chunk"}
    payload["choices"] = [] if delta is None else [{"index": 0, "delta": {"content": delta}}]
    payload["usage"] = usage
    raw = orjson.dumps(payload)
    if spaced:
        raw = raw.replace(b'":', b'": ').replace(b",", b", ")
    return b"data: " + raw + b"\n\n"


def openai_wire(*, spaced: bool = False) -> bytes:
    """An OpenAI stream asked for usage: `usage: null` on every chunk, then a usage chunk."""
    return (
        chunk("Hel", spaced=spaced)
        + chunk("lo", spaced=spaced)
        + chunk(None, spaced=spaced, usage=USAGE)
        + b"data: [DONE]\n\n"
    )


def relay(wire: bytes, observer: UsageObserver, cut: int | None = None) -> bytes:
    """Frame `wire` as two reads cut at `cut`, feed each chunk to the observer."""
    splitter = EventSplitter()
    reads = [wire] if cut is None else [wire[:cut], wire[cut:]]
    out = b""
    for read in reads:
        framed = splitter.feed(read)
        if framed:
            out += observer.feed(framed).data
    return out + observer.finish().data


@pytest.mark.parametrize("spaced", [False, True])
def test_a_client_that_did_not_ask_sees_no_usage_at_any_cut(spaced: bool) -> None:
    wire = openai_wire(spaced=spaced)
    for cut in range(len(wire) + 1):
        observer = UsageObserver("chat", client_wants_usage=False, body=BODY, model="gpt-4o-mini")
        out = relay(wire, observer, cut)
        assert b"usage" not in out, cut
        events = [json_of(e) for e in events_of(out)]
        assert [e["choices"][0]["delta"]["content"] for e in events if e] == ["Hel", "lo"]
        assert out.endswith(b"data: [DONE]\n\n")
        assert observer.reported == Usage(11, 2, 0)


@pytest.mark.parametrize("spaced", [False, True])
def test_a_client_that_asked_gets_the_stream_unchanged_at_any_cut(spaced: bool) -> None:
    wire = openai_wire(spaced=spaced)
    for cut in range(len(wire) + 1):
        observer = UsageObserver("chat", client_wants_usage=True, body=BODY, model="gpt-4o-mini")
        assert relay(wire, observer, cut) == wire, cut
        assert observer.reported == Usage(11, 2, 0)


def test_usage_alongside_choices_keeps_the_choices_and_drops_only_usage() -> None:
    wire = chunk("x", usage=USAGE) + b"data: [DONE]\n\n"
    observer = UsageObserver(
        "completions", client_wants_usage=False, body=BODY, model="gpt-4o-mini"
    )
    out = relay(wire, observer)
    assert b"usage" not in out and b'"content":"x"' in out
    assert observer.reported == Usage(11, 2, 0)


def test_an_unusual_spelling_of_usage_is_parsed_not_missed() -> None:
    odd = b'data: {"choices":[],"usage" : {"prompt_tokens":5,"completion_tokens":1}}\n\n'
    observer = UsageObserver("chat", client_wants_usage=False, body=BODY, model="gpt-4o-mini")
    out = relay(odd + b"data: [DONE]\n\n", observer)
    assert out == b"data: [DONE]\n\n"
    assert observer.reported == Usage(5, 1, 0)


def test_a_responses_stream_reports_usage_in_its_completed_event() -> None:
    completed = {
        "type": "response.completed",
        "response": {"id": "r", "usage": {"input_tokens": 7, "output_tokens": 3}},
    }
    wire = (
        b'data: {"type":"response.output_text.delta","delta":"hi"}\n\n'
        + b"data: "
        + orjson.dumps(completed)
        + b"\n\n"
    )
    observer = UsageObserver("responses", client_wants_usage=False, body=BODY, model="gpt-4o-mini")
    assert relay(wire, observer) == wire  # Responses usage is part of the object: kept
    assert observer.reported == Usage(7, 3, 0)


def test_without_a_report_the_text_seen_is_counted() -> None:
    wire = chunk("Hello") + chunk(" world") + b"data: [DONE]\n\n"
    observer = UsageObserver("chat", client_wants_usage=False, body=BODY, model="gpt-4o-mini")
    relay(wire, observer)
    assert observer.reported is None
    estimate = observer.estimate()
    assert estimate.is_estimated and estimate.output_tokens == 2 and estimate.input_tokens > 3


def test_comments_and_non_json_events_pass_through() -> None:
    wire = b": ping\n\nevent: x\ndata: not json\n\n"
    observer = UsageObserver("chat", client_wants_usage=False, body=BODY, model="gpt-4o-mini")
    assert relay(wire, observer) == wire


def no_usage_wire() -> bytes:
    """An upstream that ignored stream_options (old vLLM): no usage anywhere."""
    base = {"id": "c9", "object": "chat.completion.chunk", "created": 7, "model": "llama"}
    events = [
        {**base, "choices": [{"index": 0, "delta": {"content": piece}}]}
        for piece in ("one", " two")
    ]
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def test_a_client_that_asked_gets_a_counted_usage_chunk_before_done_at_any_cut() -> None:
    """The held [DONE] comes after OpenAI's usage chunk, counted locally."""
    wire = no_usage_wire()
    body = {"model": "m", "messages": [{"role": "user", "content": "count"}]}
    for cut in range(len(wire) + 1):
        observer = UsageObserver("chat", client_wants_usage=True, body=body, model="gpt-4o")
        streamed = relay(wire, observer, cut)
        assert b"[DONE]" not in streamed, cut
        finished = observer.finish()
        assert finished.later is not None
        tail = finished.later()
        events = events_of(streamed + tail)
        assert events[-1] == b"data: [DONE]\n\n"
        usage_chunk = json_of(events[-2])
        assert usage_chunk == {
            "id": "c9",
            "object": "chat.completion.chunk",
            "created": 7,
            "model": "llama",
            "choices": [],
            "usage": {"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10},
        }  # "count" as one user message: 3 + 3 + its role + its text
        assert observer.reported is None
        assert observer.estimate() == Usage(8, 2, 0, is_estimated=True)


def test_a_client_that_asked_gets_usage_null_on_every_other_chunk_at_any_cut() -> None:
    """OpenAI sends `"usage": null` on every chunk but the usage chunk when include_usage
    is set; an upstream that sent no usage field gets it added, the rest unchanged."""
    wire = no_usage_wire()
    sent = [json_of(e) for e in events_of(wire)][:-1]
    for cut in range(len(wire) + 1):
        observer = UsageObserver("chat", client_wants_usage=True, body=BODY, model="gpt-4o")
        streamed = relay(wire, observer, cut)
        got = [json_of(e) for e in events_of(streamed)]
        assert got == [{**e, "usage": None} for e in sent], cut


def test_usage_null_is_added_beside_a_usage_chunk_in_the_same_read() -> None:
    """vLLM: no usage field on content chunks, a usage chunk at the end; one read of both."""
    content = no_usage_wire().replace(b"data: [DONE]\n\n", b"")
    last = chunk(None, usage=USAGE)
    observer = UsageObserver("chat", client_wants_usage=True, body=BODY, model="gpt-4o")
    streamed = observer.feed(content + last + b"data: [DONE]\n\n").data
    events = events_of(streamed)
    assert [json_of(e)["usage"] for e in events[:-2]] == [None, None]  # type: ignore[index]
    assert events[-2:] == [last, b"data: [DONE]\n\n"]
    assert observer.reported == Usage(11, 2, 0)


@pytest.mark.parametrize(
    "event",
    [
        b'data: {"error":{"message":"overloaded","type":"server_error"}}\n\n',
        b": ping\n\n",
        b"data: {}\n\n",
        b'data: {"choices":[]} \n\n',  # spaces after the object: left as sent
    ],
)
def test_usage_null_is_added_to_stream_chunks_only(event: bytes) -> None:
    observer = UsageObserver("chat", client_wants_usage=True, body=BODY, model="gpt-4o")
    assert observer.feed(event).data == event


def test_a_client_that_did_not_ask_gets_a_usage_less_stream_unchanged() -> None:
    wire = no_usage_wire()
    for endpoint in ("chat", "completions"):
        observer = UsageObserver(endpoint, client_wants_usage=False, body=BODY, model="gpt-4o")
        assert relay(wire, observer) == wire


def test_when_not_asked_or_not_a_chunked_endpoint_nothing_is_held_or_made() -> None:
    wire = no_usage_wire()
    body = {"model": "m", "messages": [{"role": "user", "content": "count"}]}
    for observer in (
        UsageObserver("chat", client_wants_usage=False, body=body, model="gpt-4o"),
        UsageObserver("responses", client_wants_usage=True, body=body, model="gpt-4o"),
    ):
        out = relay(wire, observer)
        assert out.endswith(b"data: [DONE]\n\n")
        assert observer.finish().later is None


@pytest.mark.parametrize(
    "report",
    [
        {"prompt_tokens": 11.0, "completion_tokens": 2.0, "total_tokens": 13.0},
        {"prompt_tokens": "11", "completion_tokens": "2", "total_tokens": "13"},
    ],
)
def test_counts_sent_as_floats_or_strings_are_the_stream_s_usage(report: object) -> None:
    wire = chunk("Hel") + chunk("lo") + chunk(None, usage=report) + b"data: [DONE]\n\n"
    observer = UsageObserver("chat", client_wants_usage=False, body=BODY, model="gpt-4o-mini")
    out = relay(wire, observer)
    assert b"usage" not in out
    assert observer.reported == Usage(11, 2, 0)


def test_an_unusable_report_is_no_report_and_the_text_seen_is_counted() -> None:
    bad = {"prompt_tokens": 11, "completion_tokens": "many", "total_tokens": 13}
    wire = chunk("Hello") + chunk(" world") + chunk(None, usage=bad) + b"data: [DONE]\n\n"
    observer = UsageObserver("chat", client_wants_usage=False, body=BODY, model="gpt-4o-mini")
    out = relay(wire, observer)
    assert b"usage" not in out and out.endswith(b"data: [DONE]\n\n")
    assert observer.reported is None
    estimate = observer.estimate()
    assert estimate.is_estimated and estimate.output_tokens == 2 and estimate.input_tokens > 3


def test_a_client_that_asked_gets_one_usage_chunk_when_the_upstreams_is_unusable() -> None:
    """The upstream's unusable usage chunk is not passed on: the client gets only the
    gateway's counted one (what was charged), before [DONE]."""
    bad = {"prompt_tokens": 11, "completion_tokens": "many", "total_tokens": 13}
    wire = chunk("Hello") + chunk(" world") + chunk(None, usage=bad) + b"data: [DONE]\n\n"
    for cut in range(len(wire) + 1):
        observer = UsageObserver("chat", client_wants_usage=True, body=BODY, model="gpt-4o-mini")
        streamed = relay(wire, observer, cut)
        finished = observer.finish()
        assert finished.later is not None, cut
        events = events_of(streamed + finished.later())
        usages = [json_of(e)["usage"] for e in events if b'"usage":{' in e]  # type: ignore[index]
        assert usages == [
            {
                "prompt_tokens": observer.estimate().input_tokens,
                "completion_tokens": 2,
                "total_tokens": observer.estimate().input_tokens + 2,
            }
        ], cut
        assert events[-1] == b"data: [DONE]\n\n"


def test_without_a_report_reasoning_refusals_and_legacy_calls_are_counted_too() -> None:
    """vLLM/DeepSeek `reasoning_content`, `refusal` and `function_call` deltas are output."""
    deltas = [
        {"role": "assistant", "reasoning_content": "Let me think"},
        {"reasoning_content": " it over."},
        {"refusal": "I can't."},
        {"function_call": {"name": "lookup", "arguments": ""}},
        {"function_call": {"arguments": '{"q": "x"}'}},
    ]
    base = {"id": "c2", "object": "chat.completion.chunk"}
    wire = b"".join(
        b"data: " + orjson.dumps({**base, "choices": [{"index": 0, "delta": d}]}) + b"\n\n"
        for d in deltas
    )
    observer = UsageObserver("chat", client_wants_usage=False, body=BODY, model="gpt-4o-mini")
    relay(wire + b"data: [DONE]\n\n", observer)
    generated = 'Let me think it over.I can\'t.lookup{"q": "x"}'
    assert observer.estimate().output_tokens == count_text(generated, "gpt-4o-mini") > 10


def usages_of(out: bytes) -> list[object]:
    events = [json_of(e) for e in events_of(out)]
    return [(bool(e["choices"]), e.get("usage", "absent")) for e in events if e]


def test_usage_on_every_chunk_reaches_an_asking_client_once_at_the_end() -> None:
    """vLLM's continuous usage stats (a cumulative report on each content chunk, no usage
    chunk of its own): OpenAI's clients sum or keep the last; they get `"usage":null` on
    each content chunk and the last report on a chunk without choices, before [DONE]."""
    first = {**USAGE, "completion_tokens": 1, "total_tokens": 12}
    wire = chunk("Hel", usage=first) + chunk("lo", usage=USAGE) + b"data: [DONE]\n\n"
    for cut in range(len(wire) + 1):
        observer = UsageObserver("chat", client_wants_usage=True, body=BODY, model="gpt-4o-mini")
        out = relay(wire, observer, cut)
        assert usages_of(out) == [(True, None), (True, None), (False, USAGE)], cut
        assert out.endswith(b"data: [DONE]\n\n") and out.count(b"[DONE]") == 1
        assert json_of(events_of(out)[2])["id"] == "c1"  # the stream's own id
        assert observer.reported == Usage(11, 2, 0)


def test_usage_on_every_chunk_and_a_usage_chunk_give_one_usage_chunk() -> None:
    """The same with the usage chunk OpenAI sends too (vLLM with include_usage): the
    content chunks' reports become null, the usage chunk passes as it came."""
    first = {**USAGE, "completion_tokens": 1, "total_tokens": 12}
    wire = chunk("Hel", usage=first) + chunk(None, usage=USAGE) + b"data: [DONE]\n\n"
    for cut in range(len(wire) + 1):
        observer = UsageObserver("chat", client_wants_usage=True, body=BODY, model="gpt-4o-mini")
        out = relay(wire, observer, cut)
        assert usages_of(out) == [(True, None), (False, USAGE)], cut
        assert out.endswith(b"data: [DONE]\n\n") and out.count(b"[DONE]") == 1


def test_a_counted_usage_chunk_names_the_stream_not_azures_blank_filter_chunk() -> None:
    """Azure opens a stream with its prompt filter results on a chunk of its own, `id: ""`,
    `model: ""`, `created: 0`: the usage chunk made when the upstream sent none carries
    the answer's own id, model and time."""
    filters = {"id": "", "object": "", "created": 0, "model": "", "choices": []}
    filters["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": {}}]
    wire = b"data: " + orjson.dumps(filters) + b"\n\n" + no_usage_wire()
    body = {"model": "m", "messages": [{"role": "user", "content": "count"}]}
    observer = UsageObserver("chat", client_wants_usage=True, body=body, model="gpt-4o")
    streamed = relay(wire, observer)
    finished = observer.finish()
    assert finished.later is not None
    usage_chunk = json_of(events_of(streamed + finished.later())[-2])
    assert (usage_chunk["id"], usage_chunk["created"], usage_chunk["model"]) == ("c9", 7, "llama")
    assert usage_chunk["object"] == "chat.completion.chunk"
