"""A Responses follow-up is billed for the whole stored conversation as input: its budget
counts it (routing/affinity.py carries the conversation's size in the response id,
limits/estimate.py adds it to the estimate).

The fake upstream keeps conversations as OpenAI does: a follow-up's `input_tokens` are
the stored context plus its new input, and the stored context grows by each answer's
input and output. An agent loop of follow-ups against a small daily token budget,
whole and streamed, one at a time and five at once, never spends past the budget.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web

from gateway.limits.plan import Estimate, build_plan
from gateway.routing.affinity import verify_response_id
from tests.support.gateway import RunningGateway, running_gateway

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  m:
    deployments: [{{provider: up, model: gpt-4o-mini}}]
routing: {{timeout_s: 20, attempt_timeout_s: 10, retries: 0}}
teams:
  agents:
    models: ["*"]
    budgets: [{{period: day, tokens: {day_tokens}}}]
  free: {{models: ["*"]}}
"""
OUTPUT_WORDS = 40  # what the fake writes, unless max_output_tokens is lower
FIRST_INPUT = "go " * 300
NEXT_INPUT = "go on"


def words(value: Any) -> int:
    """The fake's token count: one per word (the gateway's tiktoken count is no lower)."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(words(v) for v in value)
    if isinstance(value, dict):
        return words(value.get("content")) + words(value.get("text"))
    return 0


@dataclass
class StatefulUpstream:
    """/v1/responses that stores every response and bills its context like OpenAI."""

    stored: dict[str, int] = field(default_factory=dict)  # response id → context tokens
    billed: list[tuple[int, int]] = field(default_factory=list)  # (input, output) per answer
    release: asyncio.Event | None = None  # streams wait on it after response.created
    base_url: str = ""
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        previous = body.get("previous_response_id")
        if previous is not None and previous not in self.stored:
            error = {"message": f"Previous response with id '{previous}' not found."}
            return web.json_response({"error": error}, status=404)
        context = 0 if previous is None else self.stored[previous]
        input_tokens = context + words(body.get("input")) + words(body.get("instructions"))
        cap = body.get("max_output_tokens")
        output_tokens = OUTPUT_WORDS if cap is None else min(cap, OUTPUT_WORDS)
        response_id = f"resp_up{next(self._ids)}"
        self.stored[response_id] = input_tokens + output_tokens
        self.billed.append((input_tokens, output_tokens))
        usage = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        text = " ".join(["ok"] * output_tokens)
        done = self.response(response_id, body, "completed", text, usage)
        if not body.get("stream"):
            return web.json_response(done)
        reply = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await reply.prepare(request)
        started = self.response(response_id, body, "in_progress", "", None)
        await reply.write(sse("response.created", {"response": started}, 0))
        if self.release is not None:
            await self.release.wait()
        await reply.write(sse("response.output_text.delta", {"delta": text}, 1))
        await reply.write(sse("response.completed", {"response": done}, 2))
        await reply.write_eof()
        return reply

    @staticmethod
    def response(
        response_id: str, body: dict[str, Any], status: str, text: str, usage: Any
    ) -> dict[str, Any]:
        content = [{"type": "output_text", "text": text, "annotations": []}]
        item = {"type": "message", "id": f"msg_{response_id}", "role": "assistant"}
        return {
            "id": response_id,
            "object": "response",
            "created_at": 1_700_000_000,
            "status": status,
            "model": body.get("model"),
            "previous_response_id": body.get("previous_response_id"),
            "output": [{**item, "status": status, "content": content}] if text else [],
            "usage": usage,
            "error": None,
            "incomplete_details": None,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
        }


def sse(kind: str, fields: dict[str, Any], n: int) -> bytes:
    data = orjson.dumps({"type": kind, **fields, "sequence_number": n})
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


@pytest.fixture
async def upstream() -> AsyncIterator[StatefulUpstream]:
    fake = StatefulUpstream()
    app = web.Application()
    app.router.add_post("/v1/responses", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield fake
    finally:
        await runner.cleanup()


async def day_counter(gw: RunningGateway, team: str = "agents") -> tuple[int, int]:
    """The team's day token budget now: (used, reserved)."""
    rules = gw.services.policy.current().teams[team]
    plan = build_plan(rules, "tester", Estimate(0, 0), gw.services.limits.clock())
    snapshot = await gw.services.limits.snapshot(plan)
    counter = snapshot.budgets[0]
    assert counter is not None
    return counter.used, counter.reserved


async def turn(client: openai.AsyncOpenAI, previous: str | None, *, stream: bool) -> str:
    """One agent turn; the id of the response it created."""
    text = FIRST_INPUT if previous is None else NEXT_INPUT
    extra = {} if previous is None else {"previous_response_id": previous}
    if not stream:
        created = await client.responses.create(
            model="m", input=text, max_output_tokens=OUTPUT_WORDS, **extra
        )
        return created.id
    ids = []
    events = await client.responses.create(
        model="m", input=text, max_output_tokens=OUTPUT_WORDS, stream=True, **extra
    )
    async for event in events:
        if event.type in ("response.created", "response.completed"):
            ids.append(event.response.id)
    assert len(ids) == 2 and ids[0] == ids[1]  # every event names the same response
    return ids[0]


BUDGET = 6_000


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_an_agent_loop_of_follow_ups_stays_within_the_budget(
    tmp_path, upstream: StatefulUpstream, stream: bool
) -> None:
    """Follow-ups until the budget refuses one: what was spent (as the upstream billed
    it) never passes the budget. Before, each follow-up reserved its few new words and
    the output cap while the upstream billed the whole conversation."""
    async with running_gateway(
        tmp_path, POLICY.format(base=upstream.base_url, day_tokens=BUDGET)
    ) as gw:
        client = await gw.openai("agents")
        previous = await turn(client, None, stream=stream)
        turns = 1
        with pytest.raises(openai.RateLimitError) as refused:
            while turns < 100:
                previous = await turn(client, previous, stream=stream)
                turns += 1
        assert refused.value.code == "insufficient_quota"
        used, reserved = await day_counter(gw)
        billed = sum(i + o for i, o in upstream.billed)
        assert used == billed and reserved == 0
        assert used <= BUDGET, (used, turns)
        assert turns >= 3  # follow-ups ran, and the loop ended by the budget


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_concurrent_follow_ups_cannot_pass_the_budget_together(
    tmp_path, upstream: StatefulUpstream, stream: bool
) -> None:
    """Five follow-ups of one conversation at once, with room for about two: each
    reserves the conversation it carries, so the rest are refused up front. Before, all
    five reserved a few words each and together spent far past the budget."""
    policy = POLICY.format(base=upstream.base_url, day_tokens=1_800)
    async with running_gateway(tmp_path, policy) as gw:
        client = await gw.openai("agents")
        first = await turn(client, None, stream=stream)
        second = await turn(client, first, stream=stream)
        results = await asyncio.gather(
            *(turn(client, second, stream=stream) for _ in range(5)), return_exceptions=True
        )
        refusals = [r for r in results if isinstance(r, Exception)]
        assert all(isinstance(r, openai.RateLimitError) for r in refusals), refusals
        assert 0 < len(refusals) < 5  # some fit, the rest were refused up front
        used, reserved = await day_counter(gw)
        assert used == sum(i + o for i, o in upstream.billed) and reserved == 0
        assert used <= 1_800, used


async def test_a_held_follow_up_reserves_the_conversation_it_carries(
    tmp_path, upstream: StatefulUpstream
) -> None:
    """While a streamed follow-up runs, the budget's reserved figure holds the stored
    context (the size its id carries) besides the new input and the output cap."""
    policy = POLICY.format(base=upstream.base_url, day_tokens=100_000)
    async with running_gateway(tmp_path, policy) as gw:
        client = await gw.openai("agents")
        first = await client.responses.create(model="m", input=FIRST_INPUT, max_output_tokens=5)
        context = sum(upstream.billed[0])  # the upstream's own usage: input + output
        upstream.release = asyncio.Event()
        events = await client.responses.create(
            model="m", input=NEXT_INPUT, previous_response_id=first.id, stream=True,
            max_output_tokens=5,
        )  # fmt: skip
        created = await anext(aiter(events))
        used, reserved = await day_counter(gw)
        assert used == context
        assert context + words(NEXT_INPUT) + 5 <= reserved < context + 50
        found = verify_response_id(gw.services.response_id_key, "agents", first.id)
        assert found is not None and found.context_tokens == context
        upstream.release.set()
        rest = [event async for event in events]
        completed = rest[-1]
        assert completed.type == "response.completed"
        assert completed.response.id == created.response.id
        # The streamed id carries the reservation: the most the conversation can now hold.
        streamed = verify_response_id(gw.services.response_id_key, "agents", created.response.id)
        assert streamed is not None and streamed.context_tokens == reserved
        assert streamed.context_tokens >= sum(upstream.billed[1])


async def test_a_follow_up_whose_conversation_does_not_fit_is_refused_up_front(
    tmp_path, upstream: StatefulUpstream
) -> None:
    """300 of 400 tokens spent: a follow-up's few new words would fit, the conversation
    it carries does not. Refused before anything goes upstream."""
    policy = POLICY.format(base=upstream.base_url, day_tokens=400)
    async with running_gateway(tmp_path, policy) as gw:
        client = await gw.openai("agents")
        first = await client.responses.create(model="m", input=FIRST_INPUT, max_output_tokens=5)
        with pytest.raises(openai.RateLimitError) as refused:
            await client.responses.create(
                model="m", input=NEXT_INPUT, previous_response_id=first.id, max_output_tokens=5
            )
        assert refused.value.code == "insufficient_quota"
        assert f"used {sum(upstream.billed[0])} tokens" in refused.value.message
        assert len(upstream.billed) == 1


async def test_a_team_without_limits_still_mints_the_exact_context(
    tmp_path, upstream: StatefulUpstream
) -> None:
    """A whole answer's id carries the upstream's usage whatever the team's rules: a
    budget added later counts the conversations already under way."""
    policy = POLICY.format(base=upstream.base_url, day_tokens=100_000)
    async with running_gateway(tmp_path, policy) as gw:
        client = await gw.openai("free")
        first = await client.responses.create(model="m", input=FIRST_INPUT)
        second = await client.responses.create(
            model="m", input=NEXT_INPUT, previous_response_id=first.id
        )
        found = verify_response_id(gw.services.response_id_key, "free", second.id)
        assert found is not None and found.context_tokens == sum(upstream.billed[1])
