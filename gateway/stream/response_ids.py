"""Stream step: the client sees gateway response ids (routing/affinity.py).

A Responses stream names its response in its first events; once learned, every
later mention of the upstream id is rewritten to the gateway's id, so every event
(`response.created` to `response.completed`) carries the same one. It is minted
before any usage is known: with `context_tokens`, the most its conversation can hold.
"""

from __future__ import annotations

from gateway.policy.compiled import Deployment
from gateway.routing.affinity import ResponseIds
from gateway.sse import json_of
from gateway.stream.steps import NOTHING, Emit, events_of

RESPONSE_KEY = b'"response"'


class ResponseIdRewriter:
    def __init__(self, ids: ResponseIds, deployment: Deployment, context_tokens: int) -> None:
        self._ids = ids
        self._deployment = deployment
        self._context_tokens = context_tokens

    def feed(self, chunk: bytes) -> Emit:
        ids = self._ids
        if not ids.learned and RESPONSE_KEY in chunk:
            for event in events_of(chunk):
                parsed = json_of(event)
                if isinstance(parsed, dict):
                    ids.learn(self._deployment, parsed.get("response"), self._context_tokens)
                    if ids.learned:
                        break
        return Emit(ids.rewrite(chunk))

    def finish(self) -> Emit:
        return NOTHING
