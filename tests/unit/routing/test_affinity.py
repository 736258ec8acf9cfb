"""Response ids bound to their team and deployment (gateway/routing/affinity.py)."""

import base64
import hashlib
import hmac

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import InvalidRequest, PreviousResponseNotFound
from gateway.policy.compiled import Deployment, ModelRoute, RoutingConfig
from gateway.routing.affinity import (
    MAC_BYTES,
    MintedId,
    ResponseIdKey,
    ResponseIds,
    mint_item_id,
    mint_response_id,
    verify_item_id,
    verify_response_id,
)

KEY = ResponseIdKey(b"k" * 32)
OTHER_KEY = ResponseIdKey(b"o" * 32)
TEAM = "alpha"

teams = st.text(min_size=1, max_size=40)
labels = st.text(min_size=1, max_size=60).filter(lambda s: "\n" not in s)
upstream_ids = st.text(min_size=1, max_size=80)
contexts = st.integers(0, 2**63 - 1)
keys = st.binary(min_size=32, max_size=64).map(ResponseIdKey)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def raw_of(response_id: str) -> bytes:
    text = response_id.removeprefix("resp_")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@given(keys, teams, labels, upstream_ids)
def test_any_team_label_and_upstream_id_round_trip(
    key: ResponseIdKey, team: str, label: str, upstream_id: str
) -> None:
    minted = mint_response_id(key, team, label, upstream_id)
    assert minted.startswith("resp_") and "=" not in minted and minted.isascii()
    assert verify_response_id(key, team, minted) == MintedId(label, upstream_id)


@given(keys, teams, labels, contexts, upstream_ids)
def test_the_context_size_round_trips(
    key: ResponseIdKey, team: str, label: str, context: int, upstream_id: str
) -> None:
    minted = mint_response_id(key, team, label, upstream_id, context)
    assert verify_response_id(key, team, minted) == MintedId(label, upstream_id, context)


@pytest.mark.parametrize(("asked", "kept"), [(-5, 0), (2**63, 2**63 - 1), (2**70, 2**63 - 1)])
def test_a_context_size_outside_64_bits_is_clamped(asked: int, kept: int) -> None:
    minted = mint_response_id(KEY, TEAM, "a/m", "resp_1", asked)
    assert verify_response_id(KEY, TEAM, minted) == MintedId("a/m", "resp_1", kept)


@given(teams, labels, contexts, upstream_ids, st.data())
def test_flipping_any_byte_is_refused(
    team: str, label: str, context: int, upstream_id: str, data: st.DataObject
) -> None:
    """The context size included: a client cannot lower what its follow-ups reserve."""
    raw = bytearray(raw_of(mint_response_id(KEY, team, label, upstream_id, context)))
    at = data.draw(st.integers(0, len(raw) - 1), label="at")
    flip = data.draw(st.integers(1, 255), label="flip")
    raw[at] ^= flip
    assert verify_response_id(KEY, team, "resp_" + b64(bytes(raw))) is None


@given(teams, teams, labels, upstream_ids)
def test_another_teams_id_is_refused(team: str, other: str, label: str, upstream_id: str) -> None:
    minted = mint_response_id(KEY, team, label, upstream_id)
    assert (verify_response_id(KEY, other, minted) is None) == (other != team)


@given(keys, keys, teams, labels, upstream_ids)
def test_an_id_minted_under_another_key_is_refused(
    key: ResponseIdKey, other: ResponseIdKey, team: str, label: str, upstream_id: str
) -> None:
    minted = mint_response_id(key, team, label, upstream_id)
    assert (verify_response_id(other, team, minted) is None) == (other.secret != key.secret)


@given(teams, labels, upstream_ids, st.integers(1, 40))
def test_truncated_or_extended_ids_are_refused(
    team: str, label: str, upstream_id: str, cut: int
) -> None:
    raw = raw_of(mint_response_id(KEY, team, label, upstream_id))
    assert verify_response_id(KEY, team, "resp_" + b64(raw[:-cut])) is None
    assert verify_response_id(KEY, team, "resp_" + b64(raw + b"x" * cut)) is None


def test_team_and_label_boundaries_cannot_be_shifted() -> None:
    """The team is length-prefixed: ('ab', 'c…') and ('a', 'bc…') are different MAC inputs."""
    minted = mint_response_id(KEY, "ab", "c/m", "resp_1")
    assert verify_response_id(KEY, "a", minted) is None
    assert verify_response_id(KEY, "ab", minted) == MintedId("c/m", "resp_1")


def gw2_id(key: ResponseIdKey, team: str, label: str, upstream_id: str) -> str:
    """An id as earlier builds minted it: `gw2`, no context size."""
    payload = b"gw2\n" + label.encode() + b"\n" + upstream_id.encode()
    message = len(team.encode()).to_bytes(4, "big") + team.encode() + payload
    mac = hmac.new(key.secret, message, hashlib.sha256).digest()[:MAC_BYTES]
    return "resp_" + b64(payload + mac)


@given(keys, teams, labels, upstream_ids)
def test_an_earlier_builds_gw2_id_is_still_accepted_with_context_zero(
    key: ResponseIdKey, team: str, label: str, upstream_id: str
) -> None:
    old = gw2_id(key, team, label, upstream_id)
    assert verify_response_id(key, team, old) == MintedId(label, upstream_id, 0)
    assert verify_response_id(key, team + "x", old) is None


def unsigned_gw1(label: str, upstream_id: str) -> str:
    return "resp_" + b64(b"gw1\n" + label.encode() + b"\n" + upstream_id.encode())


def signed(payload: bytes, team: str = TEAM) -> str:
    """A correctly MACed id around an arbitrary payload: only the parser can refuse it."""
    message = len(team.encode()).to_bytes(4, "big") + team.encode() + payload
    mac = hmac.new(KEY.secret, message, hashlib.sha256).digest()[:MAC_BYTES]
    return "resp_" + b64(payload + mac)


@pytest.mark.parametrize(
    "foreign",
    [
        "resp_68a1b2c3d4",  # an upstream's own id
        "resp_68a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d",
        "chatcmpl-123",
        "",
        "resp_",
        "resp_!!!not-base64",
        "resp_é",  # not ASCII
        "resp_" + b64(b"x" * MAC_BYTES),  # a MAC and nothing before it
        unsigned_gw1("a/model-a", "resp_up1"),  # the unsigned ids of earlier builds
        signed(b"gw1\na/model-a\nresp_up1"),  # the old mark, even with a valid MAC
        signed(b"gw2\na/model-a"),  # no separator
        signed(b"gw2\n\nresp_up1"),  # empty label
        signed(b"gw2\na/model-a\n"),  # empty upstream id
        signed(b"gw2\n\xff\nresp_up1"),  # not UTF-8
        signed(b"gw3\na/model-a\nresp_up1"),  # no context size
        signed(b"gw3\na/model-a\n\nresp_up1"),  # an empty one
        signed(b"gw3\na/model-a\n-1\nresp_up1"),  # negative
        signed(b"gw3\na/model-a\n007\nresp_up1"),  # a second spelling of 7
        signed(b"gw3\na/model-a\n 7\nresp_up1"),
        signed(b"gw3\na/model-a\n9223372036854775808\nresp_up1"),  # past 64 bits
        signed(b"gw3\na/model-a\n" + b"9" * 5000 + b"\nresp_up1"),
        signed(b"gw3\na/model-a\n\xd9\xa3\nresp_up1"),  # a non-ASCII digit
        signed(b"gw3\na/model-a\n7\n"),  # empty upstream id
        signed(b"gw4\na/model-a\n7\nresp_up1"),  # a mark from the future
    ],
)
def test_ids_this_gateway_did_not_mint_are_refused(foreign: str) -> None:
    assert verify_response_id(KEY, TEAM, foreign) is None


def test_a_padded_spelling_of_a_minted_id_is_refused() -> None:
    """One id per response: '=' padding or trailing bits would give the same bytes."""
    minted = mint_response_id(KEY, TEAM, "a/model-a", "resp_up1")
    assert verify_response_id(KEY, TEAM, minted + "=" * (-len(minted[5:]) % 4 or 4)) is None


def test_the_key_never_shows_in_its_repr_and_must_be_long_enough() -> None:
    assert "kkkk" not in repr(KEY) and "kkkk" not in str(KEY)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        ResponseIdKey(b"short")


def route(*labels: str) -> ModelRoute:
    deployments = tuple(
        Deployment(provider=p, model=m, weight=1.0, priority=1)
        for p, m in (label.split("/", 1) for label in labels)
    )
    return ModelRoute("m", deployments, RoutingConfig(), None)


def test_pin_narrows_the_route_and_hands_the_upstream_its_own_id() -> None:
    ids = ResponseIds(KEY, TEAM)
    previous = mint_response_id(KEY, TEAM, "b/model-b", "resp_up1")
    pinned, body = ids.pin(route("a/model-a", "b/model-b"), {"previous_response_id": previous})
    assert [d.label for d in pinned.deployments] == ["b/model-b"]
    assert body["previous_response_id"] == "resp_up1"
    ids.learn(pinned.deployments[0], {"id": "resp_up2"}, 120)
    out = ids.rewrite(b'{"id":"resp_up2","previous_response_id":"resp_up1"}')
    assert out == (
        b'{"id":"' + mint_response_id(KEY, TEAM, "b/model-b", "resp_up2", 120).encode() + b'",'
        b'"previous_response_id":"' + previous.encode() + b'"}'
    )


@pytest.mark.parametrize("body", [{}, {"previous_response_id": None}, {"input": "hi"}])
def test_a_request_without_a_previous_id_is_unchanged(body: dict[str, object]) -> None:
    original = route("a/model-a", "b/model-b")
    ids = ResponseIds(KEY, TEAM)
    assert ids.pin(original, body) == (original, body)
    assert ids.carried_tokens == 0


@pytest.mark.parametrize(
    ("previous", "carried"),
    [
        (mint_response_id(KEY, TEAM, "a/model-a", "resp_up1", 7_224), 7_224),
        (
            gw2_id(KEY, TEAM, "a/model-a", "resp_up1"),
            0,
        ),  # unknown: counted 0, as before
    ],
)
def test_pin_reads_the_context_a_follow_up_carries(previous: str, carried: int) -> None:
    ids = ResponseIds(KEY, TEAM)
    ids.pin(route("a/model-a"), {"previous_response_id": previous})
    assert ids.carried_tokens == carried


@pytest.mark.parametrize(
    "previous",
    [
        "resp_upstream",  # an upstream's raw id
        mint_response_id(KEY, "beta", "a/model-a", "resp_up1"),  # another team's
        mint_response_id(OTHER_KEY, TEAM, "a/model-a", "resp_up1"),  # another gateway's
        unsigned_gw1("a/model-a", "resp_up1"),  # an earlier build's unsigned id
        42,  # not a string (the body check refuses it first; this refuses it too)
        "x" * 1000,  # echoed cut
    ],
)
def test_pin_refuses_ids_not_minted_for_this_team_as_unknown(previous: object) -> None:
    with pytest.raises(PreviousResponseNotFound) as caught:
        ResponseIds(KEY, TEAM).pin(route("a/model-a"), {"previous_response_id": previous})
    error = caught.value
    assert (error.status, error.type, error.code, error.param) == (
        404,
        "invalid_request_error",
        "previous_response_not_found",
        "previous_response_id",
    )
    assert error.message.startswith("Previous response with id '")
    assert error.message.endswith("not found.")
    assert len(error.message) < 400


def test_pin_refuses_a_teams_own_id_for_a_deployment_outside_the_route() -> None:
    with pytest.raises(InvalidRequest) as caught:
        ResponseIds(KEY, TEAM).pin(
            route("a/model-a"),
            {"previous_response_id": mint_response_id(KEY, TEAM, "c/x", "r")},
        )
    assert caught.value.status == 400 and caught.value.param == "previous_response_id"
    assert "no longer routes" in caught.value.message


# --- item ids (probe p16) ---

ITEM_IDS = st.one_of(
    st.from_regex(r"(msg|fc|rs|ctc)_[0-9a-f]{1,48}", fullmatch=True), st.text(min_size=1)
)


@given(team=st.text(min_size=1), upstream=ITEM_IDS)
def test_an_item_id_reads_back_for_its_team_only(team, upstream):
    minted = mint_item_id(KEY, team, upstream)
    assert verify_item_id(KEY, team, minted) == upstream
    assert verify_item_id(KEY, team + "x", minted) is None
    assert verify_item_id(ResponseIdKey(b"j" * 32), team, minted) is None
    assert minted.isascii() and minted != upstream


@given(upstream=ITEM_IDS, at=st.integers(min_value=0), char=st.sampled_from("A_-z0"))
def test_an_altered_item_id_is_no_item(upstream, at, char):
    minted = mint_item_id(KEY, "t", upstream)
    at %= len(minted)
    altered = minted[:at] + char + minted[at + 1 :]
    assert altered == minted or verify_item_id(KEY, "t", altered) is None


def test_an_item_id_keeps_the_upstream_s_prefix():
    assert mint_item_id(KEY, "t", "msg_abc").startswith("msg_gw")
    assert mint_item_id(KEY, "t", "weird").startswith("item_gw")
    for raw in ("msg_abc", "", "msg_gw", "resp_x", "msg_gw" + "A" * 40):
        assert verify_item_id(KEY, "t", raw) is None


def test_input_items_go_upstream_with_their_own_ids_and_others_are_refused():
    ids = ResponseIds(KEY, "t")
    minted = mint_item_id(KEY, "t", "fc_1")
    body = {"input": [{"type": "function_call", "id": minted}, "text", {"type": "x"}]}
    _, sent = ids.pin(route("a/m"), body)
    assert sent["input"] == [{"type": "function_call", "id": "fc_1"}, "text", {"type": "x"}]
    assert ids.rewrite_message("Item with id 'fc_1' not found.") == (
        f"Item with id '{minted}' not found."
    )
    for bad in ("fc_1", mint_item_id(KEY, "other", "fc_1")):
        with pytest.raises(InvalidRequest) as refused:
            ResponseIds(KEY, "t").pin(
                route("a/m"), {"input": [{"type": "item_reference", "id": bad}]}
            )
        assert refused.value.status == 404 and refused.value.param == "input"
    for field in ("id", "approval_request_id"):  # no string: a wrong type, named
        with pytest.raises(InvalidRequest) as refused:
            ResponseIds(KEY, "t").pin(route("a/m"), {"input": [{"type": "x", field: 7}]})
        assert refused.value.status == 400 and refused.value.param == f"input[0].{field}"


def test_an_mcp_approval_names_its_request_as_the_upstream_minted_it():
    """`approval_request_id` names an `mcpr_` item: minted like any item id (probe p20:
    the upstream got an id it never issued, and another team's went unchecked)."""
    ids = ResponseIds(KEY, "t")
    minted = mint_item_id(KEY, "t", "mcpr_1")
    approval = {"type": "mcp_approval_response", "approval_request_id": minted, "approve": True}
    _, sent = ids.pin(route("a/m"), {"input": [approval]})
    assert sent["input"][0]["approval_request_id"] == "mcpr_1"
    with pytest.raises(InvalidRequest):
        other = {**approval, "approval_request_id": mint_item_id(KEY, "u", "mcpr_1")}
        ResponseIds(KEY, "t").pin(route("a/m"), {"input": [other]})


def test_an_answer_s_items_reach_the_client_minted():
    ids = ResponseIds(KEY, "t")
    ids.learn(
        route("a/m").deployments[0],
        {"id": "resp_1", "output": [{"id": "msg_1"}, {"id": "rs_1"}]},
        0,
    )
    out = ids.rewrite(b'{"id":"resp_1","output":[{"id":"msg_1"},{"id":"rs_1"}]}')
    assert b'"msg_1"' not in out and b'"rs_1"' not in out
    assert mint_item_id(KEY, "t", "msg_1").encode() in out


def test_many_items_are_swapped_in_one_pass_as_few_are():
    """Thousands of items: each id swapped, other strings untouched, in time linear in
    the answer (a search per swap blocked the event loop for seconds, probe p20)."""
    ids = ResponseIds(KEY, "t")
    items = [{"id": f"msg_{n}", "text": f'msg_{n} "msg_{n}"'} for n in range(4000)]
    ids.learn(route("a/m").deployments[0], {"id": "resp_1", "output": items}, 0)
    raw = orjson.dumps({"id": "resp_1", "output": items})
    out = orjson.loads(ids.rewrite(raw))
    assert out["id"] == mint_response_id(KEY, "t", "a/m", "resp_1")
    assert [item["id"] for item in out["output"]] == [
        mint_item_id(KEY, "t", f"msg_{n}") for n in range(4000)
    ]
    assert out["output"][7]["text"] == 'msg_7 "msg_7"'


@given(texts=st.lists(st.text(max_size=12), max_size=12))
def test_the_one_pass_swaps_what_the_searches_swap(texts):
    few, many = ResponseIds(KEY, "t"), ResponseIds(KEY, "t")
    for n in range(12):
        many.learn_item(f"fc_{n}")
    for n in range(3):
        few.learn_item(f"fc_{n}")
    data = orjson.dumps({"a": texts, "ids": [f"fc_{n}" for n in range(3)]})
    expected = few.rewrite(data)
    assert orjson.loads(many.rewrite(data))["ids"] == orjson.loads(expected)["ids"]
    assert orjson.loads(many.rewrite(data))["a"] == texts or any("fc_" in t for t in texts)
