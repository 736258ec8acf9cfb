"""An upstream 200 whose JSON is no answer of the endpoint asked (`{}`, `{"foo": 1}`,
`{"choices": "x"}`, embeddings without `data`, a Responses body without `output`) is a
failed attempt, like a body that is not JSON: failover, else the gateway's 502
`upstream_unavailable`, the reason in the "upstream attempt failed" log line. Answers
with an empty list (Azure's filtered `choices: []`) are still answers."""

from __future__ import annotations

import httpx2 as httpx
import orjson
import pytest
from aiohttp import web

from tests.support.aiohttp_app import serving
from tests.support.gateway import running_gateway
from tests.support.upstream import Behaviour, MockUpstream

POLICY = """
providers:
  bad: {{type: openai-compatible, api_base: "{bad}"}}
  good: {{type: openai-compatible, api_base: "{good}"}}
models:
  m:
    deployments:
      - {{provider: bad, model: bad-model}}
      - {{provider: good, model: good-model, priority: 2}}
    routing: {{retries: 1, failure_threshold: 5}}
teams:
  demo: {{models: ["*"]}}
"""
ALONE = POLICY.replace("      - {{provider: good, model: good-model, priority: 2}}\n", "")
BODIES = {
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "hi"}]},
    "/v1/completions": {"prompt": "hi"},
    "/v1/embeddings": {"input": "hi"},
    "/v1/responses": {"input": "hi"},
}
KEYS = {
    "/v1/chat/completions": "choices",
    "/v1/completions": "choices",
    "/v1/embeddings": "data",
    "/v1/responses": "output",
}
CHOICE = {"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}
NOT_ANSWERS = [{}, {"foo": 1}, {"id": "x", "object": "chat.completion", "choices": "x"}]


async def post(gw, path: str) -> httpx.Response:
    headers = {"authorization": f"Bearer {await gw.token()}"}
    async with httpx.AsyncClient(base_url=gw.origin, timeout=10) as http:
        return await http.post(path, json={"model": "m", **BODIES[path]}, headers=headers)


def failed_attempts(caplog) -> list[str]:
    return [
        r.fields["detail"] for r in caplog.records if r.getMessage() == "upstream attempt failed"
    ]


@pytest.mark.parametrize("body", NOT_ANSWERS, ids=["empty", "foreign", "choices-string"])
@pytest.mark.parametrize("path", sorted(BODIES))
async def test_a_200_that_is_no_answer_fails_over(tmp_path, caplog, path, body):
    """The next deployment answers; the log says why the first attempt failed."""
    async with MockUpstream("bad") as bad, MockUpstream("good") as good:
        bad.behave(Behaviour("status", status=200, body=body))
        async with running_gateway(
            tmp_path, POLICY.format(bad=bad.base_url, good=good.base_url)
        ) as gw:
            reply = await post(gw, path)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-gateway-deployment"] == "good/good-model"
    assert isinstance(orjson.loads(reply.content)[KEYS[path]], list)
    assert len(bad.requests) == 1 and len(good.requests) == 1
    assert failed_attempts(caplog) == [f"bad/bad-model: response has no `{KEYS[path]}` list"]


@pytest.mark.parametrize("body", [{}, []], ids=["object", "array"])
async def test_with_no_deployment_left_it_is_the_gateways_502(tmp_path, caplog, body):
    """Alone, the deployment's non-answer is the gateway's 502 in OpenAI's error shape."""
    async with MockUpstream("bad") as bad:
        bad.behave(Behaviour("status", status=200, body=body))
        async with running_gateway(
            tmp_path, ALONE.format(bad=bad.base_url, good=bad.base_url)
        ) as gw:
            reply = await post(gw, "/v1/chat/completions")
    assert reply.status_code == 502
    error = orjson.loads(reply.content)["error"]
    assert (error["type"], error["code"]) == ("api_error", "upstream_unavailable")
    assert set(error) == {"message", "type", "param", "code"}
    assert len(failed_attempts(caplog)) == 2  # retries: 1


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"id": "c", "object": "chat.completion", "choices": []}),
        ("/v1/embeddings", {"object": "list", "data": [], "model": "bad-model"}),
        (
            "/v1/chat/completions",
            {"choices": [CHOICE], "error": {"message": "partly filtered", "code": "filter"}},
        ),
    ],
    ids=["filtered-choices", "no-embeddings", "error-beside-choices"],
)
async def test_empty_answers_are_still_answers(tmp_path, caplog, path, body):
    """An empty list, or an error beside the answer's list, is relayed as before."""
    async with MockUpstream("bad") as bad:
        bad.behave(Behaviour("status", status=200, body=body))
        async with running_gateway(
            tmp_path, ALONE.format(bad=bad.base_url, good=bad.base_url)
        ) as gw:
            reply = await post(gw, path)
    assert reply.status_code == 200, reply.text
    assert orjson.loads(reply.content)[KEYS[path]] == body[KEYS[path]]
    assert failed_attempts(caplog) == []


def stream_app(first: bytes) -> web.Application:
    """An upstream whose stream begins with `first`, then a whole answer."""

    async def chat(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        delta = {"index": 0, "delta": {"content": "x"}, "finish_reason": "stop"}
        chunk = {"id": "c", "object": "chat.completion.chunk", "choices": [delta]}
        await response.write(first + b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


@pytest.mark.parametrize(
    "first", [b"data: {}\n\n", b'data: {"choices": "x"}\n\n'], ids=["empty", "choices-string"]
)
async def test_a_stream_whose_first_event_is_no_chunk_fails_over(tmp_path, caplog, first):
    """The client's stream comes from the next deployment; the log says why."""
    async with serving(stream_app(first)) as origin, MockUpstream("good") as good:
        policy = POLICY.format(bad=f"{origin}/v1", good=good.base_url)
        async with running_gateway(tmp_path, policy) as gw:
            client = await gw.openai()
            stream = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "mock reply from good"
    assert len(good.requests) == 1
    assert failed_attempts(caplog) == ["bad: stream began with an event that has no `choices`"]


async def test_a_stream_beginning_with_an_empty_choices_list_is_relayed(tmp_path, caplog):
    """Azure's first chunk (its prompt filter's results, `choices: []`) is an answer."""
    first = b'data: {"id":"","object":"","choices":[],"prompt_filter_results":[]}\n\n'
    async with serving(stream_app(first)) as origin:
        policy = ALONE.format(bad=f"{origin}/v1", good=origin)
        async with running_gateway(tmp_path, policy) as gw:
            client = await gw.openai()
            stream = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "x"
    assert failed_attempts(caplog) == []
