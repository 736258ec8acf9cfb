"""A streamed Responses agent loop reserves the conversation it has, not one it never had.

A streamed answer's id carries an upper bound of its conversation (its reservation,
the output allowance included), minted before the usage is known. Its true size,
reported by the stream's last event, is remembered (routing/response_sizes.py), and a
follow-up counts that: each turn reserves the conversation held so far, its new input
and its own allowance. Before, each turn added its whole output allowance to the next
one's estimate (12 turns of 42 tokens: ~1,800 reserved for ~460 held), until a team's
tpm refused the loop as "Request too large" (a black-box probe's, at turn 7).
"""

from __future__ import annotations

import uuid
from typing import Any

import openai
import pytest

from gateway.routing.affinity import verify_response_id
from tests.integration.test_responses_budget import StatefulUpstream
from tests.integration.test_responses_budget import upstream as upstream  # the fixture
from tests.support.gateway import running_gateway

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  m:
    deployments: [{{provider: up, model: gpt-4o-mini}}]
routing: {{timeout_s: 20, attempt_timeout_s: 10, retries: 0}}
teams:
  {team}:
    models: ["*"]
    limits: {{tpm: 100000}}
"""
ALLOWANCE = 150  # each turn's max_output_tokens (the fake writes 40)
NEW_INPUT = 2  # "go on"


async def streamed_turn(client: openai.AsyncOpenAI, previous: str | None) -> tuple[str, str]:
    """One streamed turn: the ids of its first and last events."""
    extra: dict[str, Any] = {} if previous is None else {"previous_response_id": previous}
    events = await client.responses.create(
        model="m", input="go on", max_output_tokens=ALLOWANCE, stream=True, **extra
    )
    ids = [
        event.response.id
        async for event in events
        if event.type in ("response.created", "response.completed")
    ]
    return ids[0], ids[-1]


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_streamed_agent_loop_counts_what_its_conversation_holds(
    tmp_path, upstream: StatefulUpstream, backend: str, request: pytest.FixtureRequest
) -> None:
    team = f"agents{uuid.uuid4().hex[:8]}"
    settings = {} if backend == "memory" else {"redis_url": request.getfixturevalue("redis_url")}
    policy = POLICY.format(base=upstream.base_url, team=team)
    async with running_gateway(tmp_path, policy, **settings) as gw:
        client = await gw.openai(team)
        previous = None
        held = 0  # what the conversation holds, as the upstream billed it
        for turn in range(12):
            first, last = await streamed_turn(client, previous)
            assert first == last  # every event names the same response
            previous = last
            minted = verify_response_id(gw.services.response_id_key, team, last)
            assert minted is not None
            # The id holds this turn's reservation: what the conversation held before it
            # (as the upstream billed it), the new input and the allowance; never less
            # than what it holds now.
            assert minted.context_tokens >= sum(upstream.billed[turn])
            assert minted.context_tokens <= held + NEW_INPUT + ALLOWANCE + 10, turn
            held = sum(upstream.billed[turn])
        assert len(upstream.billed) == 12


async def test_an_unknown_size_falls_back_to_the_bound(
    tmp_path, upstream: StatefulUpstream
) -> None:
    """A streamed answer whose size was never noted (another process's table, evicted)
    is continued counting the bound its id carries: never less than the truth."""
    team = f"agents{uuid.uuid4().hex[:8]}"
    policy = POLICY.format(base=upstream.base_url, team=team)
    async with running_gateway(tmp_path, policy) as gw:
        client = await gw.openai(team)
        _, first = await streamed_turn(client, None)
        await gw.services.response_sizes.close()  # forgets every size noted
        bound = verify_response_id(gw.services.response_id_key, team, first)
        assert bound is not None
        _, second = await streamed_turn(client, first)
        minted = verify_response_id(gw.services.response_id_key, team, second)
        assert minted is not None
        # Reserved from the bound: the next bound holds the first one whole.
        assert minted.context_tokens >= bound.context_tokens + ALLOWANCE
