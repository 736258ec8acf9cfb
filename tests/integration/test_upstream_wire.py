"""Upstreams that speak OpenAI's wire format in its other legal spellings.

vLLM, TGI and FastAPI-based servers write spaced JSON, CRLF line ends split
across reads, `data:[DONE]` without a space, a last event without its blank
line, and error bodies in their own shapes. A scripted upstream sends those
exact bytes; the official SDK is the client.
"""

import asyncio
import json

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from gateway.routing.affinity import MintedId, verify_response_id
from tests.support.gateway import running_gateway
from tests.support.upstream import MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
  demo: {{type: mock}}
models:
  m:
    deployments: [{{provider: up, model: upstream-model}}]
  offline:
    deployments: [{{provider: demo, model: mock-1}}]
teams:
  demo: {{models: ["*"]}}
"""
USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def chat_events(dumps, with_usage=True) -> list[bytes]:
    """`data: …` lines of a two-piece chat stream with OpenAI's usage:null fields."""
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "u"}
    out = [
        {**base, "choices": [{"index": 0, "delta": {"content": c}, "finish_reason": f}]}
        | {"usage": None}
        for c, f in (("Hel", None), ("lo", None), ("", "stop"))
    ]
    if with_usage:
        out.append({**base, "choices": [], "usage": USAGE})
    return [b"data: " + dumps(o).encode() for o in out]


def compact(o) -> str:
    return json.dumps(o, separators=(",", ":"))


class ScriptedUpstream:
    """Answers every POST with `parts`, each written and flushed on its own."""

    def __init__(self, parts: list[bytes]):
        self.parts = parts

    async def __aenter__(self):
        async def handle(request: web.Request) -> web.StreamResponse:
            await request.read()
            resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await resp.prepare(request)
            for part in self.parts:
                await resp.write(part)
                await asyncio.sleep(0.02)  # separate reads on the gateway's side
            await resp.write_eof()
            return resp

        app = web.Application()
        app.router.add_post("/v1/chat/completions", handle)
        app.router.add_post("/v1/responses", handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/v1"
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()


async def chat_stream_through(tmp_path, parts, **create):
    """(SDK chunks, raw bytes the gateway sent, the access-log line) for one chat stream."""
    log = tmp_path / "access.log"
    async with ScriptedUpstream(parts) as up:
        async with running_gateway(
            tmp_path, POLICY.format(base=up.base_url), access_log=str(log)
        ) as gw:
            client = await gw.openai()
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            body.update(create)
            got = [c async for c in await client.chat.completions.create(**body)]
            async with aiohttp.ClientSession() as http:
                headers = {"authorization": f"Bearer {await gw.token()}"}
                url = f"{gw.base_url}/chat/completions"
                async with http.post(url, json=body, headers=headers) as response:
                    raw = await response.read()
    lines = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    assert len(lines) == 2 and lines[0] == {**lines[1], **{k: lines[0][k] for k in VARYING}}
    return got, raw, lines[-1]


VARYING = ("ts", "request_id", "latency_ms", "ttfb_ms")


async def test_spaced_json_usage_is_read_and_hidden_from_a_client_that_did_not_ask(tmp_path):
    parts = [e + b"\n\n" for e in chat_events(json.dumps)] + [b"data: [DONE]\n\n"]
    assert b'"usage": {' in parts[-2] and b'"usage": null' in parts[0]
    got, raw, line = await chat_stream_through(tmp_path, parts)
    assert all(c.choices for c in got), "a choices=[] usage chunk reached the client"
    assert b'"usage"' not in raw
    assert "".join(c.choices[0].delta.content or "" for c in got) == "Hello"
    assert (line["usage_estimated"], line["output_tokens"], line["outcome"]) == (False, 2, "ok")


async def test_spaced_json_usage_reaches_a_client_that_asked(tmp_path):
    parts = [e + b"\n\n" for e in chat_events(json.dumps)] + [b"data: [DONE]\n\n"]
    got, _, line = await chat_stream_through(
        tmp_path, parts, stream_options={"include_usage": True}
    )
    assert got[-1].usage.total_tokens == 5 and got[-1].choices == []
    assert line["usage_estimated"] is False


async def test_crlf_split_between_cr_and_lf_is_one_line_end(tmp_path):
    wire = b"".join(e + b"\r\n\r\n" for e in chat_events(compact)) + b"data: [DONE]\r\n\r\n"
    cut = wire.index(b"\r\n\r\n", wire.index(b'"usage":{')) + 3  # …}\r\n\r | \ndata: [DONE]
    got, raw, line = await chat_stream_through(tmp_path, [wire[:cut], wire[cut:]])
    assert all(c.choices for c in got)
    assert b'"error"' not in raw
    assert (line["outcome"], line["usage_estimated"]) == ("ok", False)


async def test_every_line_end_split_still_streams(tmp_path):
    wire = b"".join(e + b"\r\n\r\n" for e in chat_events(compact)) + b"data: [DONE]\r\n\r\n"
    pieces = wire.replace(b"\r\n", b"\r\x00\n").split(b"\x00")  # every CR | LF in its own read
    got, _, line = await chat_stream_through(tmp_path, pieces)
    assert "".join(c.choices[0].delta.content or "" for c in got) == "Hello"
    assert line["outcome"] == "ok"


@pytest.mark.parametrize(
    "done", [b"data:[DONE]\n\n", b"data: [DONE]\n", b"data: [DONE]"], ids=["no-space", "lf", "eof"]
)
async def test_legal_done_spellings_end_the_stream_normally(tmp_path, done):
    parts = [e + b"\n\n" for e in chat_events(compact)] + [done]
    got, raw, line = await chat_stream_through(
        tmp_path, parts, stream_options={"include_usage": True}
    )
    assert got[-1].usage.total_tokens == 5
    assert b'"error"' not in raw
    assert line["outcome"] == "ok"


async def test_spaced_json_responses_stream_gets_gateway_ids_and_reported_usage(tmp_path):
    usage = {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}
    usage |= {"input_tokens_details": {"cached_tokens": 0}}
    usage |= {"output_tokens_details": {"reasoning_tokens": 0}}
    started = {"id": "resp_up1", "object": "response", "created_at": 1, "status": "in_progress"}
    started |= {"model": "u", "output": [], "usage": None}
    content = [{"type": "output_text", "text": "Hello", "annotations": []}]
    item = {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant"}
    done = {**started, "status": "completed", "output": [{**item, "content": content}]}
    done["usage"] = usage
    delta = {"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Hello"}
    events = [
        ("response.created", {"response": started}),
        ("response.output_text.delta", delta),
        ("response.completed", {"response": done}),
    ]
    parts = [
        f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': i, **fields})}\n\n".encode()
        for i, (kind, fields) in enumerate(events)
    ]
    log = tmp_path / "access.log"
    async with ScriptedUpstream(parts) as up:
        policy = POLICY.format(base=up.base_url)
        async with running_gateway(tmp_path, policy, access_log=str(log)) as gw:
            client = await gw.openai()
            stream = await client.responses.create(model="m", input="hi", stream=True)
            got = [e async for e in stream]
            key = gw.services.response_id_key
    assert verify_response_id(key, "demo", got[0].response.id) == MintedId(
        "up/upstream-model", "resp_up1"
    )
    assert got[-1].response.id == got[0].response.id
    line = orjson.loads(log.read_bytes().splitlines()[-1])
    assert (line["usage_estimated"], line["output_tokens"], line["outcome"]) == (False, 2, "ok")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            {"object": "error", "message": "maximum context length is 4096 tokens"}
            | {"type": "BadRequestError", "param": None, "code": 400},
            "maximum context length is 4096 tokens",
        ),  # vLLM before its error wrapper
        (
            400,
            {"error": "Input validation error: too long", "error_type": "validation"},
            "too long",
        ),
        (422, {"detail": [{"loc": ["body", "top_k"], "msg": "must be >= 1"}]}, "body.top_k"),
        (400, "prompt is too long for this deployment", "prompt is too long"),
    ],
    ids=["vllm", "tgi", "fastapi-422", "plain-text"],
)
async def test_an_upstream_4xx_message_reaches_the_caller_in_any_shape(
    tmp_path, status, body, expected
):
    async with MockUpstream("up") as up:
        up.behave("status", status=status, body=body)
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            client = await gw.openai()
            with pytest.raises(openai.APIStatusError) as caught:
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}]
                )
    assert caught.value.status_code == status
    assert expected in caught.value.message


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/nope", 404),
        ("GET", "/v1/chat/completions", 405),
        ("POST", "/v1/chat/completions/", 404),
        ("OPTIONS", "/v1/models", 405),
    ],
)
async def test_refusals_before_any_handler_carry_a_request_id(tmp_path, method, path, status):
    async with running_gateway(tmp_path, POLICY.format(base="http://127.0.0.1:9/v1")) as gw:
        async with aiohttp.ClientSession() as http:
            async with http.request(method, gw.origin + path, allow_redirects=False) as r:
                body = await r.json()
                assert (r.status, r.headers["x-request-id"][:4]) == (status, "req_")
    assert set(body["error"]) == {"message", "type", "param", "code"}


async def test_a_callers_request_id_is_kept_in_any_visible_ascii(tmp_path):
    given = "trace/2026+abc=="
    async with running_gateway(tmp_path, POLICY.format(base="http://127.0.0.1:9/v1")) as gw:
        async with aiohttp.ClientSession() as http:
            for sent, kept in ((given, True), ("two words", True), ("x" * 257, False)):
                headers = {"x-request-id": sent}
                async with http.get(gw.origin + "/v1/models", headers=headers) as r:
                    assert (r.headers["x-request-id"] == sent) is kept


async def test_completions_accept_a_null_prompt(tmp_path):
    async with MockUpstream("up") as up:
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            client = await gw.openai()
            result = await client.completions.create(model="m", prompt=None, max_tokens=5)
            assert result.choices[0].text
            with pytest.raises(openai.BadRequestError) as caught:
                await client.completions.create(model="m", prompt=42)  # type: ignore[arg-type]
    assert caught.value.body["param"] == "prompt"
    assert up.requests[0].json["prompt"] is None


async def test_mock_provider_answers_base64_embeddings(tmp_path):
    async with running_gateway(tmp_path, POLICY.format(base="http://127.0.0.1:9/v1")) as gw:
        client = await gw.openai()
        as_text = await client.embeddings.create(
            model="offline", input="a", encoding_format="base64"
        )
        as_floats = await client.embeddings.create(
            model="offline", input="a", encoding_format="float"
        )
        decoded = await client.embeddings.create(model="offline", input="a")  # SDK asks base64
    assert isinstance(as_text.data[0].embedding, str)
    assert decoded.data[0].embedding == pytest.approx(as_floats.data[0].embedding, abs=1e-6)
