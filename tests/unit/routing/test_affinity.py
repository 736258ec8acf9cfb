"""Response ids that carry their deployment (gateway/routing/affinity.py)."""

import pytest

from gateway.errors import InvalidRequest
from gateway.policy.compiled import Deployment, ModelRoute, RoutingConfig
from gateway.routing.affinity import ResponseIds, decode_response_id, encode_response_id


def test_round_trip_keeps_label_and_upstream_id() -> None:
    encoded = encode_response_id("azure-eu/gpt-4o-2024-08-06", "resp_68a1b2c3")
    assert encoded.startswith("resp_") and "=" not in encoded
    assert decode_response_id(encoded) == ("azure-eu/gpt-4o-2024-08-06", "resp_68a1b2c3")


@pytest.mark.parametrize(
    "foreign",
    [
        "resp_68a1b2c3d4",  # an upstream's own id
        "chatcmpl-123",
        "resp_",
        "resp_!!!not-base64",
        "resp_" + "Z3cx",  # "gw1" without the separator
        "resp_" + "Z3cxCmEvYgo",  # marker and label but an empty upstream id
        "resp_/w",  # not UTF-8
    ],
)
def test_ids_the_gateway_did_not_mint_decode_to_none(foreign: str) -> None:
    assert decode_response_id(foreign) is None


def route(*labels: str) -> ModelRoute:
    deployments = tuple(
        Deployment(provider=p, model=m, weight=1.0, priority=1)
        for p, m in (label.split("/", 1) for label in labels)
    )
    return ModelRoute("m", deployments, RoutingConfig(), None)


def test_pin_narrows_the_route_and_hands_the_upstream_its_own_id() -> None:
    ids = ResponseIds()
    previous = encode_response_id("b/model-b", "resp_up1")
    pinned, body = ids.pin(route("a/model-a", "b/model-b"), {"previous_response_id": previous})
    assert [d.label for d in pinned.deployments] == ["b/model-b"]
    assert body["previous_response_id"] == "resp_up1"
    ids.learn(pinned.deployments[0], {"id": "resp_up2"})
    out = ids.rewrite(b'{"id":"resp_up2","previous_response_id":"resp_up1"}')
    assert out == (
        b'{"id":"' + encode_response_id("b/model-b", "resp_up2").encode() + b'",'
        b'"previous_response_id":"' + previous.encode() + b'"}'
    )


def test_pin_leaves_foreign_ids_alone_and_refuses_deployments_outside_the_route() -> None:
    original = route("a/model-a", "b/model-b")
    body = {"previous_response_id": "resp_upstream"}
    assert ResponseIds().pin(original, body) == (original, body)
    with pytest.raises(InvalidRequest) as caught:
        ResponseIds().pin(original, {"previous_response_id": encode_response_id("c/x", "r")})
    assert caught.value.param == "previous_response_id"
