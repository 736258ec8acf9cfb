"""An upstream reporting more output than the request could generate (probe p14: 2^40
tokens against the 4,096 cap the gateway sent, booked as reported: $26,843 for one
request, a $1,000 monthly budget overrun 26 times). The output charged is at most the
cap sent upstream times the choices, marked estimated; the budget holds."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from tests.support.gateway import running_gateway
from tests.support.upstream import Behaviour, MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  m:
    deployments: [{{provider: up, model: up-model}}]
    price: {{input_per_mtok: 1, output_per_mtok: 100000}}
teams:
  demo: {{models: ["*"], budgets: [{{period: month, usd: 1000}}]}}
"""


def _rows(tmp_path: Path) -> list[tuple[int, int, int]]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        return db.execute(
            "SELECT output_tokens, tokens_estimated, cost_nanousd FROM usage_ledger"
        ).fetchall()


@pytest.mark.parametrize("stream", [False, True])
async def test_output_beyond_the_cap_sent_is_charged_at_the_cap(tmp_path: Path, stream) -> None:
    async with MockUpstream("up") as up:
        up.behave(Behaviour("ok", prompt_tokens=10, completion_tokens=2**40))
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            client = await gw.openai("demo")
            messages = [{"role": "user", "content": "hi"}]
            if stream:
                chunks = await client.chat.completions.create(
                    model="m",
                    messages=messages,
                    max_completion_tokens=100,
                    n=2,
                    stream=True,
                    stream_options={"include_usage": True},
                )
                async for _ in chunks:
                    pass
            else:
                await client.chat.completions.create(
                    model="m", messages=messages, max_completion_tokens=100, n=2
                )
            # Without a cap of its own, the request goes up with the team's allowance
            # (a budget reserves it): that bounds the charge too.
            await client.chat.completions.create(model="m", messages=messages)
            # The budget still has room: the first requests did not book $110 billion.
            await client.chat.completions.create(model="m", messages=messages)
            for _ in range(50):
                if len(_rows(tmp_path)) == 3:
                    break
                await asyncio.sleep(0.1)
    capped, allowance, _ = sorted(_rows(tmp_path))
    assert capped[:2] == (200, 1)  # 100 a choice, two choices; estimated
    assert capped[2] == 10 * 1_000 + 200 * 100_000_000  # nano-USD: 10 in + 200 out ($20)
    assert allowance[0] == 4096 and allowance[1] == 1
