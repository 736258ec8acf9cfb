"""Responses API follow-ups reach the deployment that holds the conversation, and only
the team that created it may continue it (routing/affinity.py).

Two equally weighted OpenAI-compatible deployments serve one model; without
pinning, about half of all `previous_response_id` follow-ups would land on the
upstream that never saw the first response. Two teams may both use the model;
neither may continue the other's conversation.
"""

import base64

import openai
import pytest

from gateway.routing.affinity import (
    MintedId,
    ResponseIdKey,
    mint_response_id,
    verify_response_id,
)
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.upstream import Behaviour, MockUpstream

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
  other: {{models: ["*"]}}
"""


def minted(gw: RunningGateway, response_id: str, team: str = "demo") -> MintedId:
    """What a gateway id the client got names (fails the test if it is not `team`'s)."""
    found = verify_response_id(gw.services.response_id_key, team, response_id)
    assert found is not None, response_id
    return found


def assert_unknown(error: openai.NotFoundError, response_id: str) -> None:
    """Refused exactly as OpenAI refuses an id it does not have."""
    assert error.status_code == 404
    assert error.body == {
        "message": f"Previous response with id '{response_id}' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }


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
    decoded = minted(gw, response.id)
    assert decoded.deployment_label == label
    holder = upstreams[label]
    upstream_id = decoded.upstream_id
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
    assert len(sent) == 12 and all(s and s.startswith("resp_mock") for s in sent)
    assert sent[0] == upstream_id


async def test_streamed_responses_carry_gateway_ids_and_pin_follow_ups(setup):
    gw, upstreams = setup
    client = await gw.openai()
    stream = await client.responses.create(model="m", input="hi", stream=True)
    events = [event async for event in stream]
    created = next(e for e in events if e.type == "response.created")
    completed = next(e for e in events if e.type == "response.completed")
    assert created.response.id == completed.response.id
    decoded = minted(gw, completed.response.id)
    label, upstream_id = decoded.deployment_label, decoded.upstream_id
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


async def test_an_upstream_404_for_the_callers_previous_response_is_passed_back(setup):
    """A 404 about the caller's own stored response is no deployment failure: it reaches
    the caller as the upstream's 404, and no other deployment is asked."""
    gw, upstreams = setup
    client = await gw.openai(max_retries=0)
    first = await client.responses.with_raw_response.create(model="m", input="hi")
    holder = upstreams[first.headers["x-gateway-deployment"]]
    other = next(up for up in upstreams.values() if up is not holder)
    gone = {
        "message": "Previous response with id 'resp_x' not found.",
        "type": "invalid_request_error",
        "param": "previous_response_id",
        "code": "previous_response_not_found",
    }
    holder.behave("status", status=404, body={"error": gone})
    seen_by_other = len(other.requests)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.responses.create(
            model="m", input="more", previous_response_id=first.parse().id
        )
    assert caught.value.code == "previous_response_not_found"
    assert len(other.requests) == seen_by_other


async def test_follow_up_for_a_deployment_the_model_no_longer_has_is_refused(setup):
    """The team's own (stale) id naming a deployment outside the model's route never routes there."""
    gw, upstreams = setup
    client = await gw.openai(max_retries=0)
    key = gw.services.response_id_key
    stale = mint_response_id(key, "demo", "elsewhere/secret-model", "resp_123")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="m", input="more", previous_response_id=stale)
    assert caught.value.body["param"] == "previous_response_id"
    assert "no longer routes" in caught.value.message
    assert all(len(up.requests) == 0 for up in upstreams.values())


@pytest.mark.parametrize("stream", [False, True])
async def test_another_team_cannot_continue_a_teams_conversation(setup, stream):
    """Team B sending team A's id gets 404 previous_response_not_found; no upstream is called."""
    gw, upstreams = setup
    first = await (await gw.openai("demo")).responses.create(model="m", input="a secret")
    seen = sum(len(up.requests) for up in upstreams.values())
    intruder = await gw.openai("other")
    with pytest.raises(openai.NotFoundError) as caught:
        await intruder.responses.create(
            model="m", input="what did I say?", previous_response_id=first.id, stream=stream
        )
    assert_unknown(caught.value, first.id)
    assert sum(len(up.requests) for up in upstreams.values()) == seen


async def test_each_team_continues_only_its_own_conversation(setup):
    """Both teams' follow-ups work on their own ids; each id verifies for its team alone."""
    gw, _ = setup
    key = gw.services.response_id_key
    for team, stranger in (("demo", "other"), ("other", "demo")):
        client = await gw.openai(team)
        first = await client.responses.create(model="m", input="hi")
        follow = await client.responses.create(
            model="m", input="more", previous_response_id=first.id
        )
        assert follow.previous_response_id == first.id
        assert minted(gw, follow.id, team).deployment_label == (
            minted(gw, first.id, team).deployment_label
        )
        assert verify_response_id(key, stranger, first.id) is None


def unsigned_gw1(label: str, upstream_id: str) -> str:
    """The unsigned id format of earlier builds (`gw1`), which nothing in production holds."""
    raw = b"gw1\n" + label.encode() + b"\n" + upstream_id.encode()
    return "resp_" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def tampered(response_id: str) -> str:
    """The same id with its last character changed: the MAC no longer matches."""
    return response_id[:-1] + ("A" if response_id[-1] != "A" else "B")


@pytest.mark.parametrize("forge", ["upstream", "elsewhere", "gw1", "tampered", "another_key"])
async def test_ids_this_gateway_did_not_mint_for_the_team_are_unknown(setup, forge):
    """A raw upstream id, an old unsigned id, a tampered one or another gateway's: 404."""
    gw, upstreams = setup
    client = await gw.openai()
    first = await client.responses.create(model="m", input="hi")
    label, upstream_id = minted(gw, first.id).deployment_label, minted(gw, first.id).upstream_id
    other_key = ResponseIdKey(b"x" * 32)  # another installation's
    previous = {
        "upstream": upstream_id,  # the id the upstream itself gave, which it would know
        "elsewhere": "resp_from_elsewhere",
        "gw1": unsigned_gw1(label, upstream_id),
        "tampered": tampered(first.id),
        "another_key": mint_response_id(other_key, "demo", label, upstream_id),
    }[forge]
    with pytest.raises(openai.NotFoundError) as caught:
        await client.responses.create(model="m", input="more", previous_response_id=previous)
    assert_unknown(caught.value, previous)
    assert sum(len(up.requests) for up in upstreams.values()) == 1


async def test_a_huge_unknown_id_is_echoed_cut(setup):
    """The refusal repeats at most 256 characters of what the client sent."""
    gw, upstreams = setup
    client = await gw.openai()
    previous = "resp_" + "x" * 100_000
    with pytest.raises(openai.NotFoundError) as caught:
        await client.responses.create(model="m", input="more", previous_response_id=previous)
    assert caught.value.body["code"] == "previous_response_not_found"
    assert len(caught.value.body["message"]) < 400
    assert "(cut, 100005 characters)" in caught.value.body["message"]
    assert all(len(up.requests) == 0 for up in upstreams.values())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("previous_response_id", 42, "expected a string"),
        ("background", True, "Background responses are not supported"),
        # A conversation object's size can never be known here: no budget could count it.
        ("conversation", "conv_123", "Conversation objects are not supported"),
        ("conversation", {"id": "conv_123"}, "Conversation objects are not supported"),
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


@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstreams_404_names_the_id_the_client_sent(setup, stream):
    """A stored response the upstream no longer has (deleted, expired, `store: false`):
    its 404 quotes the id it was sent, the upstream's own; the client gets the id it
    sent, as every answer and event shows it, never the upstream's."""
    gw, upstreams = setup
    client = await gw.openai()
    first = await client.responses.with_raw_response.create(model="m", input="hi")
    response = first.parse()
    upstream_id = minted(gw, response.id).upstream_id
    upstreams[first.headers["x-gateway-deployment"]].behave(
        Behaviour(
            "status",
            status=404,
            body={
                "error": {
                    "message": f"Previous response with id '{upstream_id}' not found.",
                    "type": "invalid_request_error",
                    "param": "previous_response_id",
                    "code": "previous_response_not_found",
                }
            },
        )
    )
    with pytest.raises(openai.NotFoundError) as caught:
        await client.responses.create(
            model="m", input="and then?", previous_response_id=response.id, stream=stream
        )
    assert_unknown(caught.value, response.id)
    assert upstream_id not in str(caught.value.body)
