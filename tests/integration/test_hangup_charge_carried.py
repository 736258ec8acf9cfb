"""A Responses follow-up cut short by its client: the upstream read the conversation it
continues (`previous_response_id`) as well as the new input, so that carried context is
charged with the prompt, in the ledger row and in the team's budget (issue 9: budgets
count everything).

The gateway runs in-process on 127.0.0.1 against a mock upstream; the first turn is
answered with a reported usage (400 in, 100 out: a 500-token conversation), then the
follow-up meets an upstream that never answers, or that stalls mid-stream, and the
client (aiohttp, short timeout) hangs up.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.integration.test_client_gone_before_answer import (
    ledger_rows,
    post,
    settled_budget,
)
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.upstream import Behaviour, MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat:
    deployments: [{{provider: up, model: upstream-chat}}]
    price: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}
routing: {{timeout_s: 30, attempt_timeout_s: 20, retries: 1}}
teams:
  cut:
    models: ["*"]
    max_tokens_default: 100  # the first turn reports 100 out: within its cap
    budgets: [{{period: day, tokens: 100000}}]
"""
NANO_PER_INPUT_TOKEN = 1_000  # 1.0 USD per million input tokens
CARRIED = 500  # the first turn's reported usage: 400 in + 100 out
NEW_INPUT = "and what about the second quarter " * 8


async def first_turn(gw: RunningGateway, token: str, up: MockUpstream) -> str:
    """A first answered turn; the gateway's id of it (which carries its 500 tokens)."""
    up.behave(Behaviour(prompt_tokens=400, completion_tokens=100))
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gw.base_url}/responses",
            json={"model": "chat", "input": "the quarterly figures, please"},
            headers={"authorization": f"Bearer {token}"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
        return str((await response.json())["id"])


@pytest.mark.parametrize(
    "stream, upstream",
    [
        (False, "hang"),
        (True, "hang"),
        (True, Behaviour(mode="stream_stall", fault_after=3)),
    ],
    ids=["whole, before the answer", "stream, before the answer", "stream, mid-way"],
)
async def test_a_follow_up_cut_short_is_charged_the_conversation_it_carried(
    tmp_path, stream: bool, upstream: str | Behaviour
):
    """The follow-up's 499 row is charged its new input (counted here) plus the 500
    carried tokens, at the input price; the same input without `previous_response_id`,
    cut the same way, is charged 500 fewer; the day budget used is what the rows say."""
    follow_up: dict[str, Any] = {"input": NEW_INPUT, "stream": stream}
    async with MockUpstream(name="up") as up:
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            token = await gw.token("cut")
            previous = await first_turn(gw, token, up)
            up.behave(upstream)
            # The same new input, alone: what the gateway counts for it.
            assert await post(gw, token, "responses", follow_up) is None
            await up.wait_for_disconnects(1)
            carried_follow_up = {**follow_up, "previous_response_id": previous}
            assert await post(gw, token, "responses", carried_follow_up) is None
            await up.wait_for_disconnects(2)
            budget = await settled_budget(gw)
    first, alone, continued = ledger_rows(tmp_path)
    assert (first["input_tokens"], first["output_tokens"]) == (400, 100)
    for row in (alone, continued):
        assert (row["status"], row["outcome"]) == (499, "client_disconnected")
        assert row["tokens_estimated"] == 1
    assert alone["input_tokens"] > 0
    assert continued["input_tokens"] == alone["input_tokens"] + CARRIED
    assert continued["output_tokens"] == alone["output_tokens"]
    extra_cost = continued["cost_nanousd"] - alone["cost_nanousd"]
    assert extra_cost == CARRIED * NANO_PER_INPUT_TOKEN
    rows = (first, alone, continued)
    assert budget["used"] == sum(r["input_tokens"] + r["output_tokens"] for r in rows)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_follow_up_answered_without_usage_is_charged_the_conversation_it_carried(
    tmp_path, stream: bool
):
    """An upstream that reports no usage (old vLLM): the gateway counts the answer itself,
    from the new input; a follow-up's upstream also read the 500 carried tokens, so its
    row is charged them too, and the budget used is what the rows say."""
    follow_up: dict[str, Any] = {"model": "chat", "input": NEW_INPUT, "stream": stream}
    async with MockUpstream(name="up") as up:
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            token = await gw.token("cut")
            previous = await first_turn(gw, token, up)
            up.behave(Behaviour(mode="stream_no_usage", content="the second quarter grew"))
            for body in (follow_up, {**follow_up, "previous_response_id": previous}):
                async with (
                    aiohttp.ClientSession() as http,
                    http.post(
                        f"{gw.base_url}/responses",
                        json=body,
                        headers={"authorization": f"Bearer {token}"},
                    ) as response,
                ):
                    assert response.status == 200, await response.text()
                    await response.read()
            budget = await settled_budget(gw)
    first, alone, continued = ledger_rows(tmp_path)
    for row in (alone, continued):
        assert (row["status"], row["outcome"], row["tokens_estimated"]) == (200, "ok", 1)
    assert continued["input_tokens"] == alone["input_tokens"] + CARRIED
    assert continued["output_tokens"] == alone["output_tokens"]
    rows = (first, alone, continued)
    assert budget["used"] == sum(r["input_tokens"] + r["output_tokens"] for r in rows)
