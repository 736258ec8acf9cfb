"""A client that hangs up before the first byte of its answer, as the ledger and the
budgets see it: once an attempt went upstream, the upstream has the prompt (and bills it),
so the prompt is charged; before any attempt was out, nothing is.

The gateway runs in-process on 127.0.0.1 against a mock upstream that never answers (or
refuses and asks to be retried later); the client is aiohttp with a short timeout. Rows
are read from the SQLite file after the gateway stopped (its lifespan flushes the writer).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest

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
    max_tokens_default: 50
    budgets: [{{period: day, tokens: 500}}]
"""
NANO_PER_INPUT_TOKEN = 1_000  # 1.0 USD per million input tokens
PROMPT = "please summarise the quarterly figures " * 12  # about 60 tokens
HANG_UP_S = 0.5  # the client's timeout: it goes before the upstream answers
BODIES: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("chat/completions", {"messages": [{"role": "user", "content": PROMPT}]}),
    "chat stream": (
        "chat/completions",
        {"messages": [{"role": "user", "content": PROMPT}], "stream": True},
    ),
    "completions": ("completions", {"prompt": PROMPT}),
    "embeddings": ("embeddings", {"input": PROMPT}),
    "responses": ("responses", {"input": PROMPT}),
    "responses stream": ("responses", {"input": PROMPT, "stream": True}),
}


def ledger_rows(tmp_path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM usage_ledger ORDER BY at_ms, rowid")]


async def post(gw: RunningGateway, token: str, path: str, body: dict[str, Any]) -> int | None:
    """The answer's status, or None when the client hung up first."""
    timeout = aiohttp.ClientTimeout(total=HANG_UP_S)
    headers = {"authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(timeout=timeout) as http:
        try:
            async with http.post(
                f"{gw.base_url}/{path}", json={"model": "chat", **body}, headers=headers
            ) as response:
                await response.read()
                return response.status
        except TimeoutError:
            return None


async def day_budget(gw: RunningGateway) -> dict[str, Any]:
    admin = await gw.token("cut", scopes=("gateway:admin",))
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{gw.origin}/admin/teams/cut/usage", headers={"authorization": f"Bearer {admin}"}
        ) as response,
    ):
        assert response.status == 200, await response.text()
        view = await response.json()
    (budget,) = view["budgets"]
    return dict(budget)


async def settled_budget(gw: RunningGateway) -> dict[str, Any]:
    """The day budget once no request holds a reservation on it any more."""
    for _ in range(100):
        budget = await day_budget(gw)
        if budget["reserved"] == 0:
            return budget
        await asyncio.sleep(0.05)
    raise AssertionError(f"a reservation is still held: {budget}")


@pytest.mark.parametrize("name", list(BODIES))
async def test_a_hang_up_before_the_answer_is_charged_the_prompt(tmp_path, name):
    """A client gone before any answer byte, while the upstream had its request: one 499
    row charged the prompt's input tokens (counted here: estimated) at the input price,
    and the day budget used by as much."""
    path, body = BODIES[name]
    async with MockUpstream(name="up") as up:
        up.behave("hang")
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            token = await gw.token("cut")
            assert await post(gw, token, path, body) is None
            await up.wait_for_disconnects(1)
            budget = await settled_budget(gw)
    (row,) = ledger_rows(tmp_path)
    assert (row["status"], row["outcome"]) == (499, "client_disconnected")
    assert row["input_tokens"] > 0 and row["output_tokens"] == 0
    assert row["tokens_estimated"] == 1
    assert row["price_source"] == "policy"
    assert row["cost_nanousd"] == row["input_tokens"] * NANO_PER_INPUT_TOKEN
    assert budget["used"] == row["input_tokens"]


async def test_hanging_up_before_every_answer_still_runs_out_of_budget(tmp_path):
    """The probe's loop: requests cut just before their answer each spend their prompt,
    so the day budget (500 tokens) eventually refuses with 429 insufficient_quota."""
    path, body = BODIES["chat"]
    async with MockUpstream(name="up") as up:
        up.behave(Behaviour(mode="slow", delay_s=3.0))
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            token = await gw.token("cut")
            statuses = []
            for _ in range(20):
                status = await post(gw, token, path, body)
                statuses.append(status)
                if status is not None:
                    break
                await up.wait_for_disconnects(len(statuses))
                await settled_budget(gw)
    assert statuses[-1] == 429, statuses
    assert set(statuses[:-1]) == {None}
    rows = ledger_rows(tmp_path)
    cut = [row for row in rows if row["status"] == 499]
    assert len(cut) == len(statuses) - 1
    assert all(row["input_tokens"] > 0 for row in cut)


async def test_a_hang_up_while_no_attempt_is_out_is_charged_nothing(tmp_path):
    """The upstream refused the first attempt (429, retry in 3 s) and the gateway waits to
    retry; a client gone meanwhile has no request at any upstream: its row charges nothing."""
    path, body = BODIES["chat"]
    async with MockUpstream(name="up") as up:
        up.behave("status", status=429, retry_after=3)
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            token = await gw.token("cut")
            assert await post(gw, token, path, body) is None
            budget = await settled_budget(gw)
            assert len(up.requests) == 1  # the retry never went out
    (row,) = ledger_rows(tmp_path)
    assert (row["status"], row["outcome"]) == (499, "client_disconnected")
    assert (row["input_tokens"], row["output_tokens"], row["cost_nanousd"]) == (0, 0, 0)
    assert budget["used"] == 0
