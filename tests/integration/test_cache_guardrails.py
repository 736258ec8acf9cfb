"""A cache hit serves the answer output rules shaped on its miss: its ledger row names
those rules as the miss's did (with the hit's own input rules), in memory and on Redis,
whole and streamed. Official openai SDK, real gateway, mock upstream."""

import asyncio
import json
import secrets
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import running_gateway
from tests.support.upstream import Behaviour, MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat: {{deployments: [{{provider: up, model: upstream-chat}}]}}
teams:
  {team}:
    models: ["*"]
    guardrails: [pii]
    cache: {{ttl_s: 60, max_bytes: 100000}}
guardrails:
  pii:
    input:
      - {{detector: email, action: redact}}
    output:
      - {{detector: credit_card, action: redact}}
      - {{pattern: "on file", name: on_file, action: flag}}
"""
CARD = "4111 1111 1111 1111"
INPUT = {"rule": "email", "action": "redact", "where": "input"}
OUTPUT = [
    {"rule": "credit_card", "action": "redact", "where": "output"},
    {"rule": "on_file", "action": "flag", "where": "output"},
]


async def rows_of(tmp_path: Path, request_ids: list[str]) -> dict[str, dict[str, Any]]:
    """(cache, guardrails) of each request's ledger row, once the writer stored them."""
    marks = ",".join("?" * len(request_ids))
    for _ in range(100):
        with sqlite3.connect(tmp_path / "gateway.db") as db:
            found = db.execute(
                f"SELECT request_id, cache, guardrails FROM usage_ledger "
                f"WHERE request_id IN ({marks})",
                request_ids,
            ).fetchall()
        if len(found) == len(request_ids):
            return {r: {"cache": c, "guardrails": json.loads(g or "null")} for r, c, g in found}
        await asyncio.sleep(0.05)
    raise AssertionError("ledger rows missing")


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_hit_names_the_output_rules_that_shaped_its_answer(tmp_path, request, backend):
    """Miss, whole hit and streamed hit: each row says credit_card redact and on_file flag
    on output; each also names its own input redaction."""
    settings = {"redis_url": request.getfixturevalue("redis_url")} if backend == "redis" else {}
    team = f"t{secrets.token_hex(5)}"  # the Redis is shared: entries of our own
    async with MockUpstream("up") as up:
        up.behave(Behaviour("ok", content=f"Your card {CARD} is on file."))
        policy = POLICY.format(base=up.base_url, team=team)
        async with running_gateway(tmp_path, policy, **settings) as gw:
            client = await gw.openai(team)
            ids, answers = [], []
            messages = [{"role": "user", "content": "card for bob@example.com?"}]
            for _ in range(2):
                raw = await client.chat.completions.with_raw_response.create(
                    model="chat", messages=messages
                )
                ids.append(raw.headers["x-request-id"])
                answers.append(raw.parse().choices[0].message.content)
            stream = await client.chat.completions.create(
                model="chat", messages=messages, stream=True
            )
            ids.append(stream.response.headers["x-request-id"])
            answers.append("".join([c.choices[0].delta.content or "" async for c in stream]))
            rows = await rows_of(tmp_path, ids)
    assert len(up.requests) == 1
    assert answers == ["Your card [REDACTED:credit_card] is on file."] * 3
    assert [rows[i]["cache"] for i in ids] == ["miss", "hit", "hit"]
    for request_id in ids:
        assert rows[request_id]["guardrails"] == [INPUT, *OUTPUT]
