"""The Responses id step (gateway/stream/response_ids.py), on bytes."""

from __future__ import annotations

from gateway.policy.compiled import Deployment
from gateway.routing.affinity import MintedId, ResponseIdKey, ResponseIds, verify_response_id
from gateway.sse import EventSplitter, events_of, json_of
from gateway.stream.response_ids import ResponseIdRewriter

DEPLOYMENT = Deployment("main", "gpt-4o", 1.0, 1)
KEY = ResponseIdKey(b"k" * 32)
WIRE = (
    b'data: {"type":"response.created","response":{"id":"resp_up1","status":"in_progress"}}\n\n'
    b'data: {"type":"response.output_text.delta","item_id":"msg_1","delta":"hi"}\n\n'
    b'data: {"type":"response.completed","response":{"id":"resp_up1","status":"completed"}}\n\n'
)


def test_the_client_sees_only_gateway_ids_at_any_cut() -> None:
    for cut in range(len(WIRE) + 1):
        step = ResponseIdRewriter(ResponseIds(KEY, "demo"), DEPLOYMENT, 7_000)
        splitter = EventSplitter()
        out = b"".join(
            step.feed(framed).data
            for read in (WIRE[:cut], WIRE[cut:])
            if (framed := splitter.feed(read))
        )
        assert b"resp_up1" not in out, cut
        ids = [json_of(e).get("response", {}).get("id") for e in events_of(out)]
        gateway_id = ids[0]
        assert ids == [gateway_id, None, gateway_id]
        # Minted at response.created with the most the conversation can hold; the
        # completed event carries the very same id.
        found = verify_response_id(KEY, "demo", gateway_id)
        assert found == MintedId("main/gpt-4o", "resp_up1", 7_000)
        assert step.finish().data == b""
