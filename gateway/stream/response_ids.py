"""Stream step: the client sees gateway response ids (routing/affinity.py).

A Responses stream names its response in its first events; once learned, every
later mention of the upstream id is rewritten to the gateway's id, so every event
(`response.created` to `response.completed`) carries the same one. It is minted
before any usage is known: with `context_tokens`, the most its conversation can hold.
The last event (`response.completed`, `response.incomplete`) reports the usage: the
size the conversation holds (the upstream's input, which holds the earlier context,
plus its output) is remembered for its follow-ups (routing/response_sizes.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from gateway.policy.compiled import Deployment
from gateway.routing.affinity import ResponseIds
from gateway.routing.response_sizes import ResponseSizes
from gateway.sse import json_of
from gateway.stream.steps import NOTHING, Emit, events_of
from gateway.usage.usage import usage_from_report

RESPONSE_KEY = b'"response"'
ITEM_ID_KEY = b'"item_id"'
_ITEM_ID_FIELD = re.compile(rb'"item_id"\s*:\s*"([^"\\]+)"')
_OUTPUT_ITEM_MARK = b'"response.output_item.'
FINAL_TYPES = ("response.completed", "response.incomplete")
_FINAL_MARKS = tuple(f'"{kind}"'.encode() for kind in FINAL_TYPES)


class ResponseIdRewriter:
    def __init__(
        self,
        ids: ResponseIds,
        deployment: Deployment,
        context_tokens: int,
        sizes: ResponseSizes | None = None,
    ) -> None:
        self._ids = ids
        self._deployment = deployment
        self._context_tokens = context_tokens
        self._sizes = sizes

    def feed(self, chunk: bytes) -> Emit:
        ids = self._ids
        if not ids.learned and RESPONSE_KEY in chunk:
            for event in events_of(chunk):
                parsed = json_of(event)
                if isinstance(parsed, dict):
                    ids.learn(self._deployment, parsed.get("response"), self._context_tokens)
                    if ids.learned:
                        break
        learn_items(ids, chunk)
        if self._sizes is not None and ids.learned and any(m in chunk for m in _FINAL_MARKS):
            stored = stored_tokens(chunk)
            if stored is not None:
                ids.remember_size(self._sizes, stored)
        return Emit(ids.rewrite(chunk))

    def finish(self) -> Emit:
        return NOTHING


def learn_items(ids: ResponseIds, chunk: bytes) -> None:
    """The answer's item ids `chunk` names, minted for the client before it sees them:
    every event's `item_id` (bytes only), an added or done item's and a final response's
    output's ids (`ResponseIds.learn_output_item`; those events parsed: one per item,
    and the last)."""
    if ITEM_ID_KEY in chunk:
        for found in _ITEM_ID_FIELD.finditer(chunk):
            ids.learn_item(found.group(1).decode("utf-8", "replace"))
    if _OUTPUT_ITEM_MARK not in chunk and not any(m in chunk for m in _FINAL_MARKS):
        return
    for event in events_of(chunk):
        parsed = json_of(event)
        if not isinstance(parsed, dict):
            continue
        ids.learn_output_item(parsed.get("item"))
        response = parsed.get("response")
        output = response.get("output") if isinstance(response, Mapping) else None
        for each in output if isinstance(output, list) else ():
            ids.learn_output_item(each)


def stored_tokens(chunk: bytes) -> int | None:
    """The conversation's size a final Responses event in `chunk` reports (input +
    output), None when it holds no such event or its usage is missing or unreadable."""
    for event in events_of(chunk):
        parsed = json_of(event)
        if not isinstance(parsed, dict) or parsed.get("type") not in FINAL_TYPES:
            continue
        response = parsed.get("response")
        if isinstance(response, Mapping):
            usage = usage_from_report(response.get("usage"))
            if usage is not None:
                return usage.input_tokens + usage.output_tokens
    return None
