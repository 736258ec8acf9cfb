"""A stream's usage carries the service tier its answer reports (the table prices by it)."""

from __future__ import annotations

import orjson
import pytest

from gateway.stream.usage_observer import UsageObserver

BODY = {"messages": [{"role": "user", "content": "hi"}]}
USAGE = {
    "prompt_tokens": 10,
    "completion_tokens": 5,
    "total_tokens": 15,
    "prompt_tokens_details": {"audio_tokens": 4},
    "completion_tokens_details": {"audio_tokens": 3},
}


def event(payload: object) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


@pytest.mark.parametrize("wants_usage", [True, False])
def test_a_chat_usage_chunk_gives_its_tier_and_audio_tokens(wants_usage: bool) -> None:
    observer = UsageObserver("chat", client_wants_usage=wants_usage, body=BODY, model="gpt-4o")
    head = {"id": "c1", "object": "chat.completion.chunk", "service_tier": "priority"}
    observer.feed(event({**head, "choices": [{"index": 0, "delta": {"content": "hi"}}]}))
    observer.feed(event({**head, "choices": [], "usage": USAGE}))
    reported = observer.reported
    assert reported is not None and reported.service_tier == "priority"
    assert (reported.input_audio_tokens, reported.output_audio_tokens) == (4, 3)


def test_a_responses_completed_event_gives_its_tier() -> None:
    observer = UsageObserver("responses", client_wants_usage=False, body=BODY, model="gpt-4o")
    usage = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    response = {"id": "r1", "status": "completed", "service_tier": "flex", "usage": usage}
    observer.feed(event({"type": "response.completed", "response": response}))
    assert observer.reported is not None and observer.reported.service_tier == "flex"


def test_usage_learned_after_an_error_event_keeps_its_tier() -> None:
    observer = UsageObserver("chat", client_wants_usage=False, body=BODY, model="gpt-4o")
    observer.learn(event({"choices": [], "service_tier": "priority", "usage": USAGE}))
    assert observer.reported is not None and observer.reported.service_tier == "priority"
