"""Responses API follow-ups: only the team that created a response continues it, on
the deployment that holds it, and its budget counts the conversation it carries.

A stored response lives at one upstream: a `previous_response_id` sent to any
other deployment is unknown there. The gateway keeps no table for this: the
response ids it hands out carry the deployment and a MAC that binds them to the
team they were minted for (`resp_` + base64url of
`gw3\\n PROVIDER/MODEL \\n CONTEXT \\n UPSTREAM_ID` + MAC), so any replica can pin a
follow-up without a lookup. The MAC is HMAC-SHA-256 (cut to 16 bytes) under a key
every replica shares (`gateway/auth/response_id_key.py`), over the team and the payload.

CONTEXT is the conversation's size in tokens once that response is stored: what a
follow-up sends the upstream besides its own input, and is billed for as input. The
limits stage adds it to the follow-up's estimate (limits/estimate.py); under the MAC
a client cannot lower it. A whole answer's is the upstream's own usage (input, which
holds the earlier context, plus output); a streamed answer's id goes out before its
usage is known, so it carries the request's reservation, an upper bound; the size its
stream's last event reports is remembered (routing/response_sizes.py), and a follow-up
counts that when it is known. The `gw2`
ids of earlier builds (no CONTEXT) are still accepted: their context is unknown and
counts 0, as it did when they were minted.

A `previous_response_id` this gateway did not mint for the caller's team (another
team's, a forged or altered one, an upstream's raw id, anything malformed, the
unsigned `gw1` ids of earlier builds) is refused exactly as OpenAI refuses an
unknown id, so a team that learns another team's id learns nothing from it. A
pinned deployment must also be one the requested model routes to.

The items of a stored response (a message `msg_…`, a function call `fc_…`, a
reasoning item `rs_…`) can be named again too: an `item_reference`, or an input item
carrying its `id`, which the upstream resolves from any stored response of its
account (probe p16: one team pulled another's stored message into its context). So
item ids are minted alike: the upstream's prefix, `gw`, and base64url of
`gwi\n UPSTREAM_ID` + MAC over the team; an input item's id must be one minted for
the caller's team (it goes upstream as the upstream's own), else the request is
refused as OpenAI refuses an unknown item (404, `param: "input"`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import orjson

from gateway.errors import (
    InvalidRequest,
    InvalidType,
    ItemNotFound,
    PreviousResponseNotFound,
    quoted,
)
from gateway.policy.compiled import Deployment, ModelRoute
from gateway.usage.usage import MAX_COUNT_DIGITS, MAX_TOKEN_COUNT

if TYPE_CHECKING:
    from gateway.routing.response_sizes import ResponseSizes

PREFIX = "resp_"
FEW_SWAPS = 8  # more ids to swap than this: one pass over the answer's strings
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
# An input item's fields that name an item of a stored response: its own, an MCP approval's.
ITEM_ID_FIELDS = ("id", "approval_request_id")
_ITEM_MARK = b"gwi\n"
_ITEM_ID = re.compile(r"([a-z]{1,16}_)gw([A-Za-z0-9_-]+)")  # prefix, base64url
_UPSTREAM_PREFIX = re.compile(r"[a-z]{1,16}_")
_MARK = b"gw3\n"  # carries the context size
_MARK_GW2 = b"gw2\n"  # earlier builds' ids, without it: context unknown, counted 0
MAC_BYTES = 16  # 128 bits: forging needs ~2^128 tries against an online oracle
KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class ResponseIdKey:
    """The HMAC key of response ids; its repr never shows the secret."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) < KEY_BYTES:
            raise ValueError(f"a response id key needs at least {KEY_BYTES} bytes")


@dataclass(frozen=True, slots=True)
class MintedId:
    """What a verified gateway response id names."""

    deployment_label: str
    upstream_id: str
    context_tokens: int = 0  # the stored conversation's size; 0 when unknown (gw2)


def _mac(key: ResponseIdKey, team: str, payload: bytes) -> bytes:
    team_bytes = team.encode()
    # Length-prefixed team: no (team, payload) pair can be read as another.
    message = len(team_bytes).to_bytes(4, "big") + team_bytes + payload
    return hmac.new(key.secret, message, hashlib.sha256).digest()[:MAC_BYTES]


def mint_response_id(
    key: ResponseIdKey, team: str, deployment_label: str, upstream_id: str, context_tokens: int = 0
) -> str:
    """The id the client sees for `upstream_id`, created by `deployment_label` for `team`,
    whose stored conversation holds `context_tokens` (capped at a 64-bit count)."""
    context = min(max(context_tokens, 0), MAX_TOKEN_COUNT)
    payload = b"%b%b\n%d\n%b" % (_MARK, deployment_label.encode(), context, upstream_id.encode())
    raw = payload + _mac(key, team, payload)
    return PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def verify_response_id(key: ResponseIdKey, team: str, response_id: str) -> MintedId | None:
    """What `response_id` names if this gateway minted it for `team`, else None."""
    if not response_id.startswith(PREFIX) or not response_id.isascii():
        return None
    text = response_id[len(PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    # Re-encoding must give back the text: one id per payload, no padding games.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != text:
        return None
    if len(raw) <= MAC_BYTES:
        return None
    payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    if not payload.startswith((_MARK, _MARK_GW2)):
        return None
    if not hmac.compare_digest(mac, _mac(key, team, payload)):
        return None
    return _parsed(payload)


def mint_item_id(key: ResponseIdKey, team: str, upstream_id: str) -> str:
    """The id the client sees for the upstream's item `upstream_id`, for `team`: the
    upstream's prefix kept (`msg_`, `fc_`, `rs_`; else `item_`)."""
    payload = _ITEM_MARK + upstream_id.encode()
    raw = payload + _mac(key, team, payload)
    found = _UPSTREAM_PREFIX.match(upstream_id)
    prefix = found.group() if found else "item_"
    return prefix + "gw" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def verify_item_id(key: ResponseIdKey, team: str, item_id: str) -> str | None:
    """The upstream's id of the item `item_id` names if this gateway minted it for
    `team`, else None."""
    found = _ITEM_ID.fullmatch(item_id) if item_id.isascii() else None
    if found is None:
        return None
    text = found.group(2)
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    if len(raw) <= MAC_BYTES + len(_ITEM_MARK) or not payload.startswith(_ITEM_MARK):
        return None
    if not hmac.compare_digest(mac, _mac(key, team, payload)):
        return None
    try:
        upstream_id = payload[len(_ITEM_MARK) :].decode()
    except UnicodeDecodeError:
        return None
    # One spelling per item: the prefix and the encoding as minted.
    return upstream_id if mint_item_id(key, team, upstream_id) == item_id else None


def _parsed(payload: bytes) -> MintedId | None:
    """The fields of a MAC-checked payload (`gw3` or `gw2`), None if malformed."""
    label, sep, rest = payload[len(_MARK) :].partition(b"\n")  # both marks: 4 bytes
    context = 0
    if payload.startswith(_MARK):
        digits, sep, rest = rest.partition(b"\n")
        if not _is_count(digits):
            return None
        context = int(digits)
    upstream_id = rest
    if not sep or not label or not upstream_id:
        return None
    try:
        return MintedId(label.decode(), upstream_id.decode(), context)
    except UnicodeDecodeError:
        return None


def _is_count(digits: bytes) -> bool:
    """Canonical decimal digits of a 64-bit count: one spelling per number."""
    return (
        0 < len(digits) <= MAX_COUNT_DIGITS
        and digits.isdigit()
        and (digits == b"0" or not digits.startswith(b"0"))
        and int(digits) <= MAX_TOKEN_COUNT
    )


class ResponseIds:
    """Translate response ids between the client's view and the pinned upstream's.

    `pin()` reads the request; the instance then rewrites outgoing bytes so the
    client only ever sees gateway ids (the new response's own id, and the echo
    of the `previous_response_id` it sent). `carried_tokens` is the size of the
    conversation a pinned follow-up carries (0 without one, or for a `gw2` id).
    """

    def __init__(self, key: ResponseIdKey, team: str) -> None:
        self._key = key
        self._team = team
        self._swaps: list[tuple[bytes, bytes]] = []  # (upstream id, gateway id), JSON-quoted
        self._learned: tuple[str, str] | None = None  # the new response: (label, upstream id)
        self._previous: MintedId | None = None  # the response a follow-up continues
        self._items: set[str] = set()  # the answer's item ids learned (upstream's)
        self._table: dict[bytes, bytes] = {}  # the swaps by upstream id, once there are many
        self._table_swaps = 0  # how many swaps `_table` holds
        self.carried_tokens = 0

    def pin(
        self, route: ModelRoute, body: Mapping[str, Any]
    ) -> tuple[ModelRoute, Mapping[str, Any]]:
        """The route narrowed to the deployment holding `previous_response_id`, and the
        body carrying that deployment's own ids (the response's, its input items').
        Unchanged without either; 404 unless this gateway minted them for this team."""
        body = self._upstream_items(body)
        previous = body.get("previous_response_id")
        if previous is None:
            return route, body
        minted = (
            verify_response_id(self._key, self._team, previous)
            if isinstance(previous, str)
            else None
        )
        if minted is None:
            raise PreviousResponseNotFound(
                f"Previous response with id {quoted(previous)} not found.",
                param="previous_response_id",
            )
        deployment = _deployment_labelled(route, minted.deployment_label)
        if deployment is None:
            raise InvalidRequest(
                f"Previous response {quoted(previous)} was created by a deployment that the model "
                f"'{route.alias}' no longer routes to; start a new conversation.",
                param="previous_response_id",
            )
        self._swaps.append((orjson.dumps(minted.upstream_id), orjson.dumps(previous)))
        self.carried_tokens = minted.context_tokens
        self._previous = minted
        pinned = replace(route, deployments=(deployment,))
        return pinned, {**body, "previous_response_id": minted.upstream_id}

    def _upstream_items(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """`body` with each input item's item ids (an `item_reference`'s, an item given
        again with its `id`, an MCP approval's `approval_request_id`) the upstream's own;
        404 for one not minted for this team, 400 for one that is no string. A tool's
        `container` named by id likewise (`_upstream_containers`)."""
        body = self._upstream_containers(body)
        items = body.get("input")
        if not isinstance(items, list):
            return body
        upstream: list[Any] = []
        changed = False
        for number, item in enumerate(items):
            if not isinstance(item, Mapping):
                upstream.append(item)
                continue
            own = {
                name: self._upstream_item_id(item[name], f"input[{number}].{name}")
                for name in ITEM_ID_FIELDS
                if item.get(name) is not None
            }
            upstream.append({**item, **own} if own else item)
            changed = changed or bool(own)
        return {**body, "input": upstream} if changed else body

    def _upstream_containers(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """`body` with each code interpreter tool's `container` id the upstream's own: a
        container lives in the upstream account every team shares, and its files and
        the code run in it are the team's that made it (probe p25), so its id goes out
        minted for that team like an item's, and one not minted for the caller's is a
        404. A `container` object (`{"type": "auto"}`) is left as it is."""
        tools = body.get("tools")
        if not isinstance(tools, list):
            return body
        upstream: list[Any] = []
        changed = False
        for number, tool in enumerate(tools):
            given = tool.get("container") if isinstance(tool, Mapping) else None
            if not isinstance(given, str):
                upstream.append(tool)
                continue
            own = self._upstream_id(given, "Container", f"tools[{number}].container")
            upstream.append({**tool, "container": own})
            changed = True
        return {**body, "tools": upstream} if changed else body

    def _upstream_item_id(self, given: object, field_path: str) -> str:
        if not isinstance(given, str):
            raise InvalidType(
                f"Invalid type for '{field_path}': expected a string.", param=field_path
            )
        return self._upstream_id(given, "Item", "input")

    def _upstream_id(self, given: str, kind: str, param: str) -> str:
        """The upstream's own id of one minted for this team (its answer will name it as
        the client knows it); 404 `{kind} with id '…' not found.` otherwise."""
        own = verify_item_id(self._key, self._team, given)
        if own is None:
            raise ItemNotFound(f"{kind} with id {quoted(given)} not found.", param=param)
        self._swaps.append((orjson.dumps(own), orjson.dumps(given)))
        return own

    def learn(self, deployment: Deployment, response: object, context_tokens: int) -> None:
        """Note the id of the response `deployment` created (a Responses object), whose
        stored conversation holds at most `context_tokens`, and of the items it holds."""
        if self._learned is not None or not isinstance(response, Mapping):
            return
        upstream_id = response.get("id")
        if isinstance(upstream_id, str) and upstream_id:
            gateway_id = mint_response_id(
                self._key, self._team, deployment.label, upstream_id, context_tokens
            )
            self._swaps.append((orjson.dumps(upstream_id), orjson.dumps(gateway_id)))
            self._learned = (deployment.label, upstream_id)
        output = response.get("output")
        for item in output if isinstance(output, list) else ():
            self.learn_output_item(item)

    def learn_output_item(self, item: object) -> None:
        """Note an output item of the answer: its id, and a code interpreter call's
        container (minted like an item's: it lives in the shared upstream account)."""
        if isinstance(item, Mapping):
            self.learn_item(item.get("id"))
            self.learn_item(item.get("container_id"))

    def learn_item(self, upstream_id: object) -> None:
        """Note an item of the answer: the client sees its id as minted for the team."""
        if not isinstance(upstream_id, str) or not upstream_id or upstream_id in self._items:
            return
        self._items.add(upstream_id)
        minted = mint_item_id(self._key, self._team, upstream_id)
        self._swaps.append((orjson.dumps(upstream_id), orjson.dumps(minted)))

    @property
    def learned(self) -> bool:
        return self._learned is not None

    def remember_size(self, sizes: ResponseSizes, context_tokens: int) -> None:
        """The new response's conversation turned out to hold `context_tokens` (its
        stream's last event said so): noted for its follow-ups."""
        if self._learned is not None:
            label, upstream_id = self._learned
            sizes.remember(self._team, label, upstream_id, context_tokens)

    async def count_known_size(self, sizes: ResponseSizes) -> None:
        """A follow-up: count the size its conversation was found to hold when smaller
        than the bound its id carries (a streamed answer's)."""
        previous = self._previous
        if previous is None or not self.carried_tokens:
            return
        known = await sizes.recall(self._team, previous.deployment_label, previous.upstream_id)
        if known is not None and known < self.carried_tokens:
            self.carried_tokens = known

    def rewrite(self, data: bytes) -> bytes:
        swaps = self._swaps
        if len(swaps) <= FEW_SWAPS:  # the usual answer: a byte search each
            for upstream, gateway in swaps:
                if upstream in data:
                    data = data.replace(upstream, gateway)
            return data
        # Many items: one pass over the JSON strings, each looked up (a search per swap
        # cost items x bytes on the event loop: 4,000 items blocked it 3 s, probe p20).
        if self._table_swaps != len(swaps):
            self._table, self._table_swaps = {}, len(swaps)
            for upstream, gateway in swaps:
                self._table.setdefault(upstream, gateway)  # the first swap wins, as above
        table = self._table
        return _JSON_STRING.sub(lambda found: table.get(found[0], found[0]), data)

    def rewrite_message(self, message: str) -> str:
        """An upstream's relayed error message, its ids as the client knows them: OpenAI's
        404 quotes the `previous_response_id` it was sent (the upstream's own)."""
        for upstream, gateway in self._swaps:
            bare = orjson.loads(upstream)
            if bare in message:
                message = message.replace(bare, orjson.loads(gateway))
        return message


def _deployment_labelled(route: ModelRoute, label: str) -> Deployment | None:
    return next((d for d in route.deployments if d.label == label), None)
