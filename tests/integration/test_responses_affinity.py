"""Responses API follow-ups reach the deployment that holds the conversation (routing/affinity.py).

Two equally weighted OpenAI-compatible deployments serve one model; without
pinning, about half of all `previous_response_id` follow-ups would land on the
upstream that never saw the first response.
"""

import openai
import pytest

from gateway.routing.affinity import decode_response_id, encode_response_id
from tests.support.gateway import running_gateway
from tests.support.upstream import MockUpstream

EVEN_PAIR = """
providers:
  a: {{type: openai-compatible, api_base: "{a}"}}
  b: {{type: openai-compatible, api_base: "{b}"}}
models:
  m:
    deployments:
      - {{provider: a, model: model-a}}
      - {{provider: b, model: model-b}}
    routing: {{retries: 2, attempt_timeout_s: 5, timeout_s: 10, cooldown_s: 30, failure_threshold: 1}}
teams:
  demo: {{models: ["*"]}}
"""


@pytest.fixture
async def setup(tmp_path):
    async with MockUpstream("a") as a, MockUpstream("b") as b:
        async with running_gateway(tmp_path, EVEN_PAIR.format(a=a.base_url, b=b.base_url)) as gw:
            yield gw, {"a/model-a": a, "b/model-b": b}


async def test_follow_ups_stay_on_the_deployment_that_created_the_response(setup):
    gw, upstreams = setup
    client = await gw.openai()
    first = await client.responses.with_raw_response.create(model="m", input="hi")
    label = first.headers["x-gateway-deployment"]
    response = first.parse()
    decoded = decode_response_id(response.id)
    assert decoded is not None and decoded[0] == label
    holder = upstreams[label]
    upstream_id = decoded[1]
    assert upstream_id.startswith("resp_mock")

    previous = response.id
    for _ in range(12):
        raw = await client.responses.with_raw_response.create(
            model="m", input="and then?", previous_response_id=previous
        )
        assert raw.headers["x-gateway-deployment"] == label
        follow_up = raw.parse()
        assert follow_up.previous_response_id == previous  # the echo shows the client's own id
        previous = follow_up.id
    # Each follow-up reached the holder carrying the upstream's own id, never the gateway's.
    sent = [r.json.get("previous_response_id") for r in holder.requests[1:]]
    assert len(sent) == 12 and all(s and decode_response_id(s) is None for s in sent)
    assert sent[0] == upstream_id


async def test_streamed_responses_carry_gateway_ids_and_pin_follow_ups(setup):
    gw, upstreams = setup
    client = await gw.openai()
    stream = await client.responses.create(model="m", input="hi", stream=True)
    events = [event async for event in stream]
    created = next(e for e in events if e.type == "response.created")
    completed = next(e for e in events if e.type == "response.completed")
    assert created.response.id == completed.response.id
    decoded = decode_response_id(completed.response.id)
    assert decoded is not None
    label, upstream_id = decoded
    follow = await client.responses.create(
        model="m", input="more", previous_response_id=completed.response.id, stream=True
    )
    follow_events = [event async for event in follow]
    done = next(e for e in follow_events if e.type == "response.completed")
    assert done.response.previous_response_id == completed.response.id
    assert upstreams[label].requests[-1].json["previous_response_id"] == upstream_id


async def test_pinned_deployment_down_is_an_error_not_a_silent_switch(setup):
    """The other deployment has no such conversation: failing over would answer wrongly."""
    gw, upstreams = setup
    client = await gw.openai(max_retries=0)
    first = await client.responses.with_raw_response.create(model="m", input="hi")
    label = first.headers["x-gateway-deployment"]
    holder = upstreams[label]
    other = next(up for key, up in upstreams.items() if key != label)
    holder.behave("status", status=503)
    seen_by_other = len(other.requests)
    with pytest.raises(openai.InternalServerError) as caught:
        await client.responses.create(
            model="m", input="more", previous_response_id=first.parse().id
        )
    assert caught.value.status_code == 502
    assert len(other.requests) == seen_by_other


async def test_follow_up_for_a_deployment_the_model_no_longer_has_is_refused(setup):
    """A (crafted or stale) id naming a deployment outside the model's route never routes there."""
    gw, upstreams = setup
    client = await gw.openai(max_retries=0)
    stale = encode_response_id("elsewhere/secret-model", "resp_123")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="m", input="more", previous_response_id=stale)
    assert caught.value.body["param"] == "previous_response_id"
    assert "no longer routes" in caught.value.message
    assert all(len(up.requests) == 0 for up in upstreams.values())


async def test_foreign_response_ids_pass_through_unpinned(setup):
    """An id the gateway did not mint goes to the upstream unchanged (one deployment may know it)."""
    gw, upstreams = setup
    client = await gw.openai()
    response = await client.responses.create(
        model="m", input="more", previous_response_id="resp_from_elsewhere"
    )
    assert response.previous_response_id == "resp_from_elsewhere"
    sent = [r.json["previous_response_id"] for up in upstreams.values() for r in up.requests]
    assert sent == ["resp_from_elsewhere"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("previous_response_id", 42, "expected a string"),
        ("background", True, "Background responses are not supported"),
    ],
)
async def test_stateful_fields_the_gateway_cannot_route_are_refused(setup, field, value, message):
    gw, upstreams = setup
    client = await gw.openai(max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="m", input="hi", extra_body={field: value})
    assert caught.value.body["param"] == field
    assert message in caught.value.message
    assert all(len(up.requests) == 0 for up in upstreams.values())
