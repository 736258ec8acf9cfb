"""One ledger row per inference request, however it ended, as finance later reads it.

The gateway runs in-process on 127.0.0.1 against a mock upstream; rows are read from
the SQLite file after the gateway stopped (its lifespan flushes the writer).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import orjson
import pytest

from gateway.usage.pricing import usd_text
from tests.support.gateway import running_gateway
from tests.support.upstream import Behaviour, MockUpstream

POLICY = """
providers:
  demo: {{type: mock}}
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  offline:
    deployments: [{{provider: demo, model: mock-1}}]
    price: {{input_per_mtok: 0.15, output_per_mtok: 0.60}}
  remote:
    deployments: [{{provider: up, model: upstream-model}}]
    price: {{input_per_mtok: 0.15, output_per_mtok: 0.60}}
  unpriced:
    deployments: [{{provider: up, model: no-such-price-anywhere}}]
  impatient:
    deployments: [{{provider: up, model: upstream-model}}]
    price: {{input_per_mtok: 0.15, output_per_mtok: 0.60}}
    routing: {{attempt_timeout_s: 0.5}}
teams:
  demo: {{models: ["*"]}}
  narrow: {{models: [offline]}}
"""
CHAT = {"messages": [{"role": "user", "content": "hello there"}]}


def ledger_rows(tmp_path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM usage_ledger ORDER BY at_ms, rowid")]


def by_request_id(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(row["request_id"], []).append(row)
    return found


async def test_every_way_a_request_ends_writes_one_row(tmp_path):
    """OK, 401, 403 (scope and model), 404, 400, an upstream that keeps answering 429 or
    500 (the gateway's 502 after its retries), an unpriced model: each request is one
    row with whatever team is known, its status, outcome and upstream attempts."""
    async with MockUpstream(name="up") as up:
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            token = await gw.token(team="demo", subject="alice")
            narrow = await gw.token(team="narrow", subject="bob")
            no_scope = await gw.token(team="demo", scopes=["gateway:finance"])
            sent: list[tuple[str, httpx.Response]] = []
            async with httpx.AsyncClient(base_url=gw.base_url, timeout=30) as http:

                async def post(name: str, bearer: str | None, body: dict[str, Any]) -> None:
                    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
                    headers["content-type"] = "application/json"
                    content = orjson.dumps(body)
                    reply = await http.post("/chat/completions", content=content, headers=headers)
                    sent.append((name, reply))

                await post("ok", token, {**CHAT, "model": "offline"})
                await post("no token", None, {**CHAT, "model": "offline"})
                await post("bad token", "nope", {**CHAT, "model": "offline"})
                await post("no scope", no_scope, {**CHAT, "model": "offline"})
                await post("not allowed", narrow, {**CHAT, "model": "remote"})
                await post("unknown model", token, {**CHAT, "model": "nope\x00" + "é" * 300})
                await post("bad body", token, {"model": "offline", "messages": "x"})
                up.behave("status", status=429)
                await post("upstream 429", token, {**CHAT, "model": "remote"})
                up.behave("status", status=500)
                await post("upstream 500", token, {**CHAT, "model": "remote"})
                up.behave("ok")
                await post("unpriced", token, {**CHAT, "model": "unpriced"})
    rows = by_request_id(ledger_rows(tmp_path))
    assert all(len(rows[reply.headers["x-request-id"]]) == 1 for _, reply in sent)
    assert len(rows) == len(sent)
    got = {name: rows[reply.headers["x-request-id"]][0] for name, reply in sent}
    seen = {name: (row["status"], row["outcome"], row["error_code"]) for name, row in got.items()}
    assert seen == {
        "ok": (200, "ok", None),
        "no token": (401, "refused", "invalid_api_key"),
        "bad token": (401, "refused", "invalid_api_key"),
        "no scope": (403, "refused", "insufficient_scope"),
        "not allowed": (403, "refused", "model_not_allowed"),
        "unknown model": (404, "refused", "model_not_found"),
        "bad body": (400, "refused", got["bad body"]["error_code"]),
        "upstream 429": (502, "upstream_error", "upstream_unavailable"),
        "upstream 500": (502, "upstream_error", "upstream_unavailable"),
        "unpriced": (200, "ok", None),
    }
    assert [reply.status_code for _, reply in sent] == [row[0] for row in seen.values()]
    ok = got["ok"]
    assert (ok["team"], ok["subject"], ok["client_id"]) == ("demo", "alice", "tests")
    assert (ok["model"], ok["provider"], ok["deployment"]) == ("offline", "demo", "demo/mock-1")
    assert ok["input_tokens"] > 0 and ok["output_tokens"] > 0 and ok["tokens_estimated"] == 0
    assert ok["price_source"] == "policy" and ok["price_input"] == 150_000_000
    assert ok["cost_nanousd"] > 0 and ok["attempts"] == 1
    reply_ok = sent[0][1]
    assert reply_ok.headers["x-gateway-cost-usd"] == usd_text(ok["cost_nanousd"])
    assert got["no token"]["team"] is None and got["no token"]["price_source"] == "none"
    assert (got["not allowed"]["team"], got["not allowed"]["subject"]) == ("narrow", "bob")
    # Stored as sent but cleaned for any database (PostgreSQL refuses NUL) and cut.
    assert got["unknown model"]["model"] == ("nope\ufffd" + "é" * 300)[:256]
    assert got["upstream 429"]["attempts"] == got["upstream 500"]["attempts"] == 3
    assert (
        got["upstream 500"]["deployment"] == "up/upstream-model"
        and got["upstream 500"]["cost_nanousd"] == 0
    )
    unpriced = got["unpriced"]
    assert (unpriced["price_source"], unpriced["cost_nanousd"]) == ("unknown", 0)
    assert unpriced["input_tokens"] > 0  # counted all the same: the report flags it


async def test_a_body_refused_for_a_field_keeps_its_model_on_the_row(tmp_path):
    """A 400 for a bad field value (max_tokens < 0, stream_options without stream, messages
    not a list, nesting too deep) still records the model alias the body named, cut to 256
    characters, so per-model error counts hold it; a model that is not a string records none."""
    deep: Any = "x"
    for _ in range(200):
        deep = [deep]
    bodies = {
        "max_tokens": {**CHAT, "model": "offline", "max_tokens": -5},
        "stream_options": {**CHAT, "model": "offline", "stream_options": {"include_usage": True}},
        "messages": {"model": "offline", "messages": "x"},
        "too deep": {**CHAT, "model": "offline", "metadata": deep},
        "long alias": {**CHAT, "model": "m" * 300, "max_tokens": -5},
        "model not a string": {**CHAT, "model": 7},
    }
    async with running_gateway(tmp_path, POLICY.format(base="http://127.0.0.1:9/v1")) as gw:
        token = await gw.token(team="demo")
        sent: dict[str, httpx.Response] = {}
        async with httpx.AsyncClient(base_url=gw.base_url, timeout=30) as http:
            for name, body in bodies.items():
                sent[name] = await http.post(
                    "/chat/completions",
                    content=orjson.dumps(body),
                    headers={
                        "Authorization": f"Bearer {token}",
                        "content-type": "application/json",
                    },
                )
    rows = by_request_id(ledger_rows(tmp_path))
    got = {name: rows[reply.headers["x-request-id"]][0] for name, reply in sent.items()}
    assert {name: reply.status_code for name, reply in sent.items()} == dict.fromkeys(bodies, 400)
    assert {name: (row["status"], row["outcome"]) for name, row in got.items()} == dict.fromkeys(
        bodies, (400, "refused")
    )
    assert {name: row["model"] for name, row in got.items()} == {
        "max_tokens": "offline",
        "stream_options": "offline",
        "messages": "offline",
        "too deep": "offline",
        "long alias": "m" * 256,
        "model not a string": None,
    }
    assert got["max_tokens"]["error_code"] == "integer_below_min_value"


async def test_a_client_that_hangs_up_mid_stream_gets_a_row_with_what_was_generated(tmp_path):
    """The stream is cut by the client after five events: one 499 row, client_disconnected
    (the status line said 200; the row says how the request ended)."""
    async with MockUpstream(name="up") as up:
        up.behave(Behaviour(mode="ok", chunks=40, chunk_delay_s=0.1, content="word " * 80))
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            token = await gw.token(team="demo")
            async with httpx.AsyncClient(base_url=gw.base_url, timeout=30) as http:
                async with http.stream(
                    "POST",
                    "/chat/completions",
                    json={**CHAT, "model": "remote", "stream": True},
                    headers={"Authorization": f"Bearer {token}"},
                ) as reply:
                    request_id = reply.headers["x-request-id"]
                    lines = 0
                    async for line in reply.aiter_lines():
                        lines += line.startswith("data:")
                        if lines == 5:
                            break
            await up.wait_for_disconnects(1)
            await asyncio.sleep(0.3)
    (row,) = ledger_rows(tmp_path)
    assert row["request_id"] == request_id
    assert (row["stream"], row["status"], row["outcome"]) == (1, 499, "client_disconnected")
    assert row["ttft_ms"] is not None and row["output_tokens"] > 0
    assert row["tokens_estimated"] == 1  # no usage chunk came: counted here
    assert row["cost_nanousd"] > 0


@pytest.mark.parametrize(
    ("model", "behaviour", "ended"),
    [
        ("remote", Behaviour(mode="ok"), (200, "ok", None)),
        ("remote", Behaviour(mode="stream_drop"), (502, "upstream_error", "upstream_unavailable")),
        ("impatient", Behaviour(mode="stream_stall"), (504, "upstream_error", "upstream_timeout")),
    ],
    ids=["clean", "upstream drops", "upstream stalls"],
)
async def test_a_stream_the_upstream_breaks_gets_a_row_with_the_error_events_status(
    tmp_path, model, behaviour, ended
):
    """The client got 200 and then an error event: the row carries that event's status and
    code (so the report counts it among `errors`); a clean stream's row stays 200."""
    async with MockUpstream(name="up") as up:
        up.behave(behaviour)
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            token = await gw.token(team="demo")
            async with httpx.AsyncClient(base_url=gw.base_url, timeout=30) as http:
                async with http.stream(
                    "POST",
                    "/chat/completions",
                    json={**CHAT, "model": model, "stream": True},
                    headers={"Authorization": f"Bearer {token}"},
                ) as reply:
                    assert reply.status_code == 200
                    events = [
                        line async for line in reply.aiter_lines() if line.startswith("data:")
                    ]
    sent_error = orjson.loads(events[-1][5:]).get("error") if events[-1] != "data: [DONE]" else None
    (row,) = ledger_rows(tmp_path)
    assert (row["status"], row["outcome"], row["error_code"]) == ended
    assert (sent_error or {}).get("code") == ended[2]
    assert row["stream"] == 1 and row["output_tokens"] > 0


async def test_a_repeated_client_request_id_is_two_requests_two_rows(tmp_path):
    """A client that sends the same x-request-id twice is billed twice: the key is ours."""
    async with running_gateway(tmp_path, POLICY.format(base="http://127.0.0.1:9/v1")) as gw:
        client = await gw.openai()
        for _ in range(2):
            await client.chat.completions.create(
                model="offline",
                messages=[{"role": "user", "content": "hi"}],
                extra_headers={"x-request-id": "same-id-twice"},
            )
    rows = ledger_rows(tmp_path)
    assert [row["request_id"] for row in rows] == ["same-id-twice", "same-id-twice"]
    assert len({row["id"] for row in rows}) == 2


async def test_the_sdk_sees_the_same_cost_the_ledger_keeps(tmp_path):
    """What the caller was told it cost is what finance is billed, to the nano-dollar."""
    async with running_gateway(tmp_path, POLICY.format(base="http://127.0.0.1:9/v1")) as gw:
        client: openai.AsyncOpenAI = await gw.openai()
        raw = await client.chat.completions.with_raw_response.create(
            model="offline", messages=[{"role": "user", "content": "one two three"}]
        )
    (row,) = ledger_rows(tmp_path)
    assert usd_text(row["cost_nanousd"]) == raw.headers["x-gateway-cost-usd"]
    assert row["request_id"] == raw.headers["x-request-id"]
