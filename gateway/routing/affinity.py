"""Responses API follow-ups stay on the deployment that created the response.

A stored response lives at one upstream: a `previous_response_id` sent to any
other deployment is unknown there. The gateway keeps no table for this: the
response ids it hands out carry the deployment (`resp_` + base64url of
`gw1\\n PROVIDER/MODEL \\n UPSTREAM_ID`), so any replica can pin a follow-up
without a lookup. A pinned deployment must be one the requested model already
routes to, so a crafted id can choose among the caller's own deployments and
nothing else. Ids the gateway did not mint pass through unpinned.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson

from gateway.errors import InvalidRequest, quoted
from gateway.policy.compiled import Deployment, ModelRoute

PREFIX = "resp_"
_MARK = b"gw1\n"


def encode_response_id(deployment_label: str, upstream_id: str) -> str:
    raw = _MARK + deployment_label.encode() + b"\n" + upstream_id.encode()
    return PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_response_id(response_id: str) -> tuple[str, str] | None:
    """(deployment label, upstream id) of an id this gateway minted, else None."""
    if not response_id.startswith(PREFIX):
        return None
    text = response_id[len(PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    if not raw.startswith(_MARK):
        return None
    label, sep, upstream_id = raw[len(_MARK) :].partition(b"\n")
    if not sep or not label or not upstream_id:
        return None
    try:
        return label.decode(), upstream_id.decode()
    except UnicodeDecodeError:
        return None


class ResponseIds:
    """Translate response ids between the client's view and the pinned upstream's.

    `pin()` reads the request; the instance then rewrites outgoing bytes so the
    client only ever sees gateway ids (the new response's own id, and the echo
    of the `previous_response_id` it sent).
    """

    def __init__(self) -> None:
        self._swaps: list[tuple[bytes, bytes]] = []  # (upstream id, gateway id), JSON-quoted
        self._learned = False

    def pin(
        self, route: ModelRoute, body: Mapping[str, Any]
    ) -> tuple[ModelRoute, Mapping[str, Any]]:
        """The route narrowed to the deployment holding `previous_response_id`, and the
        body carrying that deployment's own id. Unchanged when the id is not the gateway's."""
        previous = body.get("previous_response_id")
        decoded = decode_response_id(previous) if isinstance(previous, str) else None
        if decoded is None:
            return route, body
        label, upstream_id = decoded
        deployment = _deployment_labelled(route, label)
        if deployment is None:
            raise InvalidRequest(
                f"Previous response {quoted(previous)} was created by a deployment that the model "
                f"'{route.alias}' no longer routes to; start a new conversation.",
                param="previous_response_id",
            )
        self._swaps.append((orjson.dumps(upstream_id), orjson.dumps(previous)))
        pinned = replace(route, deployments=(deployment,))
        return pinned, {**body, "previous_response_id": upstream_id}

    def learn(self, deployment: Deployment, response: object) -> None:
        """Note the id of the response `deployment` created (a Responses object)."""
        if self._learned or not isinstance(response, Mapping):
            return
        upstream_id = response.get("id")
        if isinstance(upstream_id, str) and upstream_id:
            gateway_id = encode_response_id(deployment.label, upstream_id)
            self._swaps.append((orjson.dumps(upstream_id), orjson.dumps(gateway_id)))
            self._learned = True

    @property
    def learned(self) -> bool:
        return self._learned

    def rewrite(self, data: bytes) -> bytes:
        for upstream, gateway in self._swaps:
            if upstream in data:
                data = data.replace(upstream, gateway)
        return data


def _deployment_labelled(route: ModelRoute, label: str) -> Deployment | None:
    return next((d for d in route.deployments if d.label == label), None)
