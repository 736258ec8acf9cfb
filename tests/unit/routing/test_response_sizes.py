"""The table of streamed Responses answers' true sizes (routing/response_sizes.py), the
step that fills it and the follow-up that reads it."""

from __future__ import annotations

from gateway.policy.compiled import Deployment, ModelRoute, RoutingConfig
from gateway.routing.affinity import ResponseIdKey, ResponseIds, mint_response_id
from gateway.routing.response_sizes import MemorySizes, entry_name
from gateway.stream.response_ids import ResponseIdRewriter, stored_tokens

DEPLOYMENT = Deployment("main", "gpt-4o", 1.0, 1)
KEY = ResponseIdKey(b"k" * 32)
CREATED = (
    b'data: {"type":"response.created","response":{"id":"resp_up1","status":"in_progress"}}\n\n'
)
USAGE = b'"usage":{"input_tokens":30,"output_tokens":12,"total_tokens":42}'
COMPLETED = (
    b'data: {"type":"response.completed","response":{"id":"resp_up1","status":"completed",'
    + USAGE
    + b"}}\n\n"
)


async def test_the_table_keeps_the_most_recent_and_keeps_teams_apart() -> None:
    sizes = MemorySizes(capacity=2)
    sizes.remember("a", "main/gpt-4o", "resp_1", 10)
    sizes.remember("a", "main/gpt-4o", "resp_2", 20)
    sizes.remember("a", "main/gpt-4o", "resp_1", 11)  # noted again: the most recent
    sizes.remember("a", "main/gpt-4o", "resp_3", 30)  # resp_2 goes
    assert await sizes.recall("a", "main/gpt-4o", "resp_1") == 11
    assert await sizes.recall("a", "main/gpt-4o", "resp_2") is None
    assert await sizes.recall("b", "main/gpt-4o", "resp_1") is None
    assert await sizes.recall("a", "other/gpt-4o", "resp_1") is None


def test_no_name_spells_another() -> None:
    assert entry_name("t", "a", "b\nc") != entry_name("t", "a\nb", "c")
    assert entry_name("t", "a", "b").startswith("gw:resp:{t}:")


def test_the_final_event_reports_the_conversations_size() -> None:
    assert stored_tokens(COMPLETED) == 42
    assert stored_tokens(CREATED) is None
    assert stored_tokens(COMPLETED.replace(USAGE, b'"usage":null')) is None
    incomplete = COMPLETED.replace(b"response.completed", b"response.incomplete")
    assert stored_tokens(incomplete) == 42


async def test_the_stream_step_notes_the_size_under_the_new_response() -> None:
    sizes = MemorySizes()
    step = ResponseIdRewriter(ResponseIds(KEY, "demo"), DEPLOYMENT, 7_000, sizes)
    step.feed(CREATED)
    assert await sizes.recall("demo", "main/gpt-4o", "resp_up1") is None
    out = step.feed(COMPLETED).data
    assert b"resp_up1" not in out
    assert await sizes.recall("demo", "main/gpt-4o", "resp_up1") == 42


async def test_a_follow_up_counts_the_known_size_only_when_smaller() -> None:
    """Known and smaller than the bound its id carries: counted; unknown or larger: the
    bound (never less than the truth)."""
    route = ModelRoute("m", (DEPLOYMENT,), RoutingConfig(), None)
    body = {"previous_response_id": mint_response_id(KEY, "demo", "main/gpt-4o", "r1", 500)}
    for known, counted in ((None, 500), (42, 42), (900, 500)):
        sizes = MemorySizes()
        if known is not None:
            sizes.remember("demo", "main/gpt-4o", "r1", known)
        ids = ResponseIds(KEY, "demo")
        ids.pin(route, body)
        await ids.count_known_size(sizes)
        assert ids.carried_tokens == counted
    other_team = MemorySizes()
    other_team.remember("else", "main/gpt-4o", "r1", 42)
    ids = ResponseIds(KEY, "demo")
    ids.pin(route, body)
    await ids.count_known_size(other_team)
    assert ids.carried_tokens == 500


def test_the_redis_table_off_the_loop_notes_nothing_and_raises_nothing() -> None:
    from gateway.routing.response_sizes_redis import RedisSizes

    sizes = RedisSizes("redis://127.0.0.1:1/0")  # never connected: nothing is sent
    sizes.remember("demo", "main/gpt-4o", "resp_up1", 42)
    assert not sizes._writes
