"""The stream step that learns a stream's id, model and finish reasons for its spans."""

from __future__ import annotations

import orjson
import pytest

from gateway.context import RequestContext
from gateway.telemetry.stream_facts import StreamFacts


def event(payload: dict[str, object]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def chunk(reason: str | None, content: str = "x", index: int = 0) -> bytes:
    choice = {"index": index, "delta": {"content": content}, "finish_reason": reason}
    head = {"id": "chatcmpl-9", "object": "chat.completion.chunk", "model": "gpt-4o-2024"}
    return event({**head, "choices": [choice]})


CHAT = [chunk(None, ""), chunk(None), chunk("stop", ""), b"data: [DONE]\n\n"]


def learned(reads: list[bytes], endpoint: str = "chat") -> RequestContext:
    ctx = RequestContext(request_id="r", endpoint=endpoint)  # type: ignore[arg-type]
    step = StreamFacts(ctx)
    for read in reads:
        assert step.feed(read).data == read  # passes every byte as it came
    step.finish()
    return ctx


@pytest.mark.parametrize("together", [False, True])
def test_a_chat_stream_gives_its_id_model_and_finish_reason(together):
    """Read one event at a time or several per read, the facts are the same."""
    ctx = learned([b"".join(CHAT)] if together else CHAT)
    assert (ctx.response_id, ctx.response_model, ctx.finish_reasons) == (
        "chatcmpl-9",
        "gpt-4o-2024",
        ("stop",),
    )


def test_each_choice_ends_once_in_the_reasons():
    ctx = learned([chunk(None), chunk("length", index=0), chunk("stop", index=1), chunk("stop")])
    assert ctx.finish_reasons == ("length", "stop")


def test_two_choices_ending_alike_are_two_reasons():
    """n=2, both ending with "stop": one reason per generation, as the GenAI semconv wants."""
    ctx = learned([chunk(None), chunk(None, index=1), chunk("stop"), chunk("stop", index=1)])
    assert ctx.finish_reasons == ("stop", "stop")


def test_a_text_that_spells_finish_reason_is_no_finish_reason():
    ctx = learned([chunk(None, 'say "finish_reason":"stop"'), chunk(None)])
    assert ctx.finish_reasons == ()


def test_a_responses_stream_gives_its_response_id_model_and_status():
    created = {"id": "resp_up1", "object": "response", "model": "o4-mini", "status": "in_progress"}
    completed = {**created, "status": "completed"}
    ctx = learned(
        [
            b"event: response.created\n" + event({"type": "response.created", "response": created}),
            event({"type": "response.output_text.delta", "delta": "hi"}),
            event({"type": "response.completed", "response": completed}),
        ],
        endpoint="responses",
    )
    assert (ctx.response_id, ctx.response_model, ctx.finish_reasons) == (
        "resp_up1",
        "o4-mini",
        ("completed",),
    )


def test_a_stream_of_no_json_learns_nothing():
    ctx = learned([b": keep-alive\n\n", b"data: [DONE]\n\n"])
    assert (ctx.response_id, ctx.response_model, ctx.finish_reasons) == (None, None, ())
