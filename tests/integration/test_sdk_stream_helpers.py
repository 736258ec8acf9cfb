"""The openai SDK's stream helpers work through the gateway, against the built-in mock
provider and against an OpenAI-compatible upstream: `client.responses.stream()` (which
rebuilds the response from OpenAI's exact event sequence) and `client.chat.completions.stream()`."""

import pytest

from tests.support.gateway import running_gateway
from tests.support.upstream import MockUpstream

POLICY = """
providers:
  offline: {{type: mock}}
  up: {{type: openai, api_base: "{base}"}}
models:
  via-mock: {{deployments: [{{provider: offline, model: mock-1}}]}}
  via-upstream: {{deployments: [{{provider: up, model: gpt-4o-mini}}]}}
teams:
  demo: {{models: ["*"]}}
"""

MOCK_TEXT = "This is the mock provider. You said: ping"
UPSTREAM_TEXT = "mock reply from up"
EXPECTED = {"via-mock": MOCK_TEXT, "via-upstream": UPSTREAM_TEXT}
RESPONSE_SEQUENCE = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture
async def client(tmp_path):
    async with MockUpstream("up") as up:
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            yield await gw.openai()


def collapsed(types: list[str]) -> list[str]:
    """Event types with runs of one type (the text deltas) collapsed to one."""
    return [t for i, t in enumerate(types) if i == 0 or types[i - 1] != t]


@pytest.mark.parametrize("model", ["via-mock", "via-upstream"])
async def test_responses_stream_helper_rebuilds_the_final_response(client, model):
    """`responses.stream()` sees OpenAI's event order and `get_final_response()` works."""
    async with client.responses.stream(model=model, input="ping") as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    assert collapsed([e.type for e in events]) == RESPONSE_SEQUENCE
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert deltas[-1].snapshot == EXPECTED[model]  # the helper accumulated the text
    assert final.output_text == EXPECTED[model]
    assert final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens > 0
    assert final.id == events[0].response.id  # the gateway's id, the same on every event
    item_ids = {e.item_id for e in events if hasattr(e, "item_id")}
    assert item_ids == {final.output[0].id}


@pytest.mark.parametrize("model", ["via-mock", "via-upstream"])
async def test_chat_completions_stream_helper_rebuilds_the_final_completion(client, model):
    """`chat.completions.stream()` accumulates the chunks into a final completion."""
    async with client.chat.completions.stream(
        model=model,
        messages=[{"role": "user", "content": "ping"}],
        stream_options={"include_usage": True},
    ) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_completion()
    text = "".join(e.delta for e in events if e.type == "content.delta")
    assert text == EXPECTED[model]
    assert [e.content for e in events if e.type == "content.done"] == [EXPECTED[model]]
    assert final.choices[0].message.content == EXPECTED[model]
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None and final.usage.completion_tokens > 0


async def test_chat_completions_stream_helper_without_usage(client):
    """Without include_usage the helper still finishes; no usage is made up."""
    async with client.chat.completions.stream(
        model="via-mock", messages=[{"role": "user", "content": "ping"}]
    ) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.content == MOCK_TEXT
    assert final.usage is None
