"""An upstream event the client could not parse, mid-stream (`data: {garbage`, an event cut
short, in its own read, beside a good one, or as the last bytes before the close): the
official SDK parses every data event and would raise `JSONDecodeError` in the client's loop.
The gateway ends the stream before it with its own error event (502 `upstream_unavailable`,
as any mid-stream upstream failure), cuts the upstream, books the row failed, and charges
what the client got. Empty `data:` keep-alives carry nothing and are dropped. A usage chunk
the upstream sends after its own error event, in the same read, is what gets charged."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator

import httpx2 as httpx
import openai
import orjson
import pytest
from aiohttp import web

from tests.support.aiohttp_app import serving
from tests.support.gateway import running_gateway

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  m:
    deployments: [{{provider: up, model: upstream-model}}]
teams:
  demo: {{models: ["*"]}}
"""


def chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    payload = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "upstream-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


USAGE = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,'
    b'"model":"upstream-model","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,'
    b'"total_tokens":10}}\n\n'
)
DONE = b"data: [DONE]\n\n"
ERROR = b'data: {"error":{"message":"boom","type":"server_error","param":null,"code":null}}\n\n'
AFTER = [chunk(" world"), chunk(None, "stop"), USAGE, DONE]
HEL = chunk("Hel")

# script: the upstream's writes; with `None` last, it closes there, else it keeps the
# stream open (pings) until the gateway cuts it.
BROKEN = {
    "garbage_apart": [HEL, b"data: {garbage\n\n", *AFTER],
    "cut_short_apart": [HEL, b'data: {"id":\n\n', *AFTER],
    "cut_short_same_read": [HEL + b'data: {"id":"chatcmpl-1","choi\n\n' + b"".join(AFTER)],
    "html_apart": [HEL, b"data: <html><body>502 Bad Gateway</body></html>\n\n", *AFTER],
    "cut_short_at_close": [HEL, b'data: {"id":"chatcmpl-1","choices":[{"delta', None],
}
RESPONSES = [
    b'event: response.created\ndata: {"type":"response.created","sequence_number":0,'
    b'"response":{"id":"resp_1","object":"response","status":"in_progress","output":[],'
    b'"error":null,"incomplete_details":null}}\n\n',
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
    b'"sequence_number":1,"delta":"Hel"}\n\n',
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.del\n\n',
]


@contextlib.asynccontextmanager
async def upstream(writes: list[bytes | None], cut: asyncio.Event) -> AsyncIterator[str]:
    async def stream(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        try:
            for write in writes:
                if write is None:  # the upstream closes here
                    await response.write_eof()
                    cut.set()
                    return response
                await response.write(write)
                await asyncio.sleep(0.05)
            for _ in range(400):  # 20 s, unless the gateway cuts it first
                await response.write(b": ping\n\n")
                await asyncio.sleep(0.05)
        except (ConnectionError, asyncio.CancelledError):
            cut.set()
            raise
        return response

    app = web.Application(handler_args={"handler_cancellation": True})
    app.router.add_post("/v1/chat/completions", stream)
    app.router.add_post("/v1/responses", stream)
    async with serving(app) as origin:
        yield f"{origin}/v1"


CHAT = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
COLUMNS = "status, outcome, error_code, input_tokens, output_tokens, tokens_estimated"


def rows(tmp_path) -> list[tuple]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        return db.execute(f"SELECT {COLUMNS} FROM usage_ledger").fetchall()


@pytest.mark.parametrize("script", sorted(BROKEN))
async def test_the_sdk_gets_the_gateways_error_event_not_a_json_error(tmp_path, script):
    """The SDK raises the gateway's APIError (not JSONDecodeError) after the good chunk;
    the upstream is cut; the row is 502 upstream_unavailable, charged an estimate of what
    the client got."""
    cut = asyncio.Event()
    got: list[str] = []
    async with upstream(BROKEN[script], cut) as base:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            client = await gw.openai()
            stream = await client.chat.completions.create(**CHAT)
            with pytest.raises(openai.APIError, match="failed mid-stream") as raised:
                async for part in stream:
                    got.append(part.choices[0].delta.content or "")
            await asyncio.wait_for(cut.wait(), timeout=15)
    assert raised.value.code == "upstream_unavailable"
    assert "".join(got) == "Hel"
    [row] = rows(tmp_path)
    assert row[:3] == (502, "upstream_error", "upstream_unavailable")
    assert row[4] > 0 and row[5] == 1  # what was relayed, counted here


async def test_the_raw_stream_ends_on_one_error_event_and_nothing_of_the_garbage(tmp_path):
    cut = asyncio.Event()
    async with upstream(BROKEN["cut_short_same_read"], cut) as base:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            headers = {"authorization": f"Bearer {await gw.token()}"}
            async with httpx.AsyncClient(base_url=gw.origin, timeout=20) as http:
                reply = await http.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert reply.status_code == 200
    events = [e for e in reply.content.split(b"\n\n") if e.strip()]
    assert b"choi\n" not in reply.content and b"world" not in reply.content
    assert len(events) == 2 and orjson.loads(events[0][len(b"data: ") :])["choices"]
    last = orjson.loads(events[-1][len(b"data: ") :])
    assert last["error"]["code"] == "upstream_unavailable"
    assert b"[DONE]" not in reply.content


async def test_a_responses_event_cut_short_ends_with_the_responses_error_event(tmp_path):
    cut = asyncio.Event()
    async with upstream(RESPONSES, cut) as base:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            headers = {"authorization": f"Bearer {await gw.token()}"}
            body = {"model": "m", "stream": True, "input": "hi"}
            async with httpx.AsyncClient(base_url=gw.origin, timeout=20) as http:
                reply = await http.post("/v1/responses", json=body, headers=headers)
            await asyncio.wait_for(cut.wait(), timeout=15)
    events = [e for e in reply.content.split(b"\n\n") if e.strip()]
    assert b"output_text.del\n" not in reply.content and b'"output_text.del"' not in reply.content
    assert events[-1].startswith(b"event: error\ndata: ")
    last = orjson.loads(events[-1].split(b"data: ", 1)[1])
    assert (last["code"], last["sequence_number"]) == ("upstream_unavailable", 2)
    assert rows(tmp_path)[0][:3] == (502, "upstream_error", "upstream_unavailable")


async def test_empty_data_keep_alives_are_dropped_and_the_stream_ends_well(tmp_path):
    writes = [b"data:\n\n", HEL, b"data:\n\n", b"data: \n\n", chunk("lo"), *AFTER, None]
    cut = asyncio.Event()
    async with upstream(writes, cut) as base:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            client = await gw.openai()
            stream = await client.chat.completions.create(**CHAT)
            text = "".join([part.choices[0].delta.content or "" async for part in stream])
    assert text == "Hello world"
    assert rows(tmp_path) == [(200, "ok", None, 7, 3, 0)]


async def test_usage_after_the_upstreams_error_event_in_the_same_read_is_charged(tmp_path):
    """The client's stream ends on the upstream's error event; its usage chunk after it
    is never relayed, but it is what the row charges (reported, not estimated)."""
    cut = asyncio.Event()
    async with upstream([HEL, ERROR + USAGE + DONE], cut) as base:
        async with running_gateway(tmp_path, POLICY.format(base=base)) as gw:
            headers = {"authorization": f"Bearer {await gw.token()}"}
            body = {**CHAT, "stream_options": {"include_usage": True}}
            async with httpx.AsyncClient(base_url=gw.origin, timeout=20) as http:
                reply = await http.post("/v1/chat/completions", json=body, headers=headers)
            await asyncio.wait_for(cut.wait(), timeout=15)
    assert reply.content.endswith(ERROR)
    assert b'"prompt_tokens"' not in reply.content
    assert rows(tmp_path) == [(502, "upstream_error", "upstream_unavailable", 7, 3, 0)]


async def test_empty_data_keep_alives_keep_a_slow_stream_alive(tmp_path):
    """Empty `data:` keep-alives for longer than attempt_timeout_s, mid-stream: the
    upstream is alive (as with `: ping` comments), so the stream is not cut as stalled;
    the client gets the whole answer (the keep-alives as comments, which SSE ignores)."""
    writes = [HEL, *[b"data: \n\n"] * 40, chunk("lo"), *AFTER, None]  # 2 s of keep-alives
    policy = POLICY.format(base="{base}") + "routing: {attempt_timeout_s: 1}\n"
    cut = asyncio.Event()
    async with upstream(writes, cut) as base:
        async with running_gateway(tmp_path, policy.replace("{base}", base)) as gw:
            client = await gw.openai()
            stream = await client.chat.completions.create(**CHAT)
            text = "".join([part.choices[0].delta.content or "" async for part in stream])
    assert text == "Hello world"
    assert rows(tmp_path) == [(200, "ok", None, 7, 3, 0)]
