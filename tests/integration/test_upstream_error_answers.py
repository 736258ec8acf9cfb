"""An upstream that answers HTTP 200 with an error (black-box probe): a body whose JSON
object is an `error` and none of the answer's fields is a failed attempt, like a 5xx
(failover, else the gateway's own 502); a failed Responses object is relayed, with our
key and the upstream's URL cleaned out of it as from a relayed 4xx."""

from __future__ import annotations

import sqlite3

import httpx2 as httpx
import openai
import orjson
import pytest

from gateway.errors import UNRECORDED_CODE
from tests.support.gateway import running_gateway
from tests.support.upstream import Behaviour, MockUpstream

KEY = "sk-up1-SECRET0123"
POLICY = """
providers:
  bad: {{type: openai-compatible, api_base: "{bad}", api_key: "${{BAD_KEY}}"}}
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
ERROR_200 = Behaviour("status", status=200, body={"error": {"message": f"overloaded {KEY}"}})
BODIES = {
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "hi"}]},
    "/v1/completions": {"prompt": "hi"},
    "/v1/embeddings": {"input": "hi"},
    "/v1/responses": {"input": "hi"},
}


async def post(gw, path: str) -> httpx.Response:
    headers = {"authorization": f"Bearer {await gw.token()}"}
    async with httpx.AsyncClient(base_url=gw.origin, timeout=10) as http:
        return await http.post(path, json={"model": "m", **BODIES[path]}, headers=headers)


def ledger(tmp_path) -> list[tuple[int, str, str | None]]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        return db.execute("SELECT status, outcome, error_code FROM usage_ledger").fetchall()


@pytest.mark.parametrize("path", sorted(BODIES))
async def test_a_200_error_body_fails_over(tmp_path, monkeypatch, path):
    monkeypatch.setenv("BAD_KEY", KEY)
    async with MockUpstream("bad") as bad, MockUpstream("good") as good:
        bad.behave(ERROR_200)
        async with running_gateway(
            tmp_path, POLICY.format(bad=bad.base_url, good=good.base_url)
        ) as gw:
            reply = await post(gw, path)
    assert reply.status_code == 200
    assert reply.headers["x-gateway-deployment"] == "good/good-model"
    assert KEY.encode() not in reply.content
    assert not orjson.loads(reply.content).get("error")
    assert len(bad.requests) == 1 and len(good.requests) == 1


async def test_with_no_deployment_left_it_is_the_gateways_502(tmp_path, monkeypatch):
    monkeypatch.setenv("BAD_KEY", KEY)
    async with MockUpstream("bad") as bad:
        bad.behave(ERROR_200)
        async with running_gateway(
            tmp_path, ALONE.format(bad=bad.base_url, good=bad.base_url)
        ) as gw:
            reply = await post(gw, "/v1/chat/completions")
            client = await gw.openai()
            with pytest.raises(openai.InternalServerError) as caught:
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}]
                )
    assert reply.status_code == 502
    assert orjson.loads(reply.content)["error"]["code"] == "upstream_unavailable"
    assert KEY.encode() not in reply.content and bad.base_url.encode() not in reply.content
    assert caught.value.code == "upstream_unavailable"
    assert ledger(tmp_path) == [(502, "upstream_error", "upstream_unavailable")] * 2


async def test_a_failed_responses_object_is_relayed_without_our_key_or_its_url(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("BAD_KEY", KEY)
    async with MockUpstream("bad") as bad:
        failed = {
            "id": "resp_f",
            "object": "response",
            "created_at": 1,
            "status": "failed",
            "model": "bad-model",
            "output": [],
            "error": {"code": "server_error", "message": f"failed with {KEY} at {bad.base_url}"},
            "usage": None,
        }
        bad.behave("status", status=200, body=failed)
        async with running_gateway(
            tmp_path, ALONE.format(bad=bad.base_url, good=bad.base_url)
        ) as gw:
            reply = await post(gw, "/v1/responses")
    assert reply.status_code == 200
    assert KEY.encode() not in reply.content and bad.base_url.encode() not in reply.content
    payload = orjson.loads(reply.content)
    assert payload["status"] == "failed"
    assert payload["error"] == {
        "code": "server_error",
        "message": "failed with [redacted] at [upstream]",
    }


@pytest.mark.parametrize(
    ("status", "row"),
    [
        ("failed", (502, "upstream_error", "upstream_unavailable")),
        ("incomplete", (200, "ok", None)),
    ],
)
async def test_a_failed_or_incomplete_responses_object_is_cleaned_and_a_failed_one_booked(
    tmp_path, monkeypatch, status, row
):
    """Our key is cleaned out of `incomplete_details` as out of `error`; the client gets the
    object as the upstream sent it, with HTTP 200, and a failed one is booked as the
    upstream's failure (as a streamed `response.failed` is), an incomplete one as ok."""
    monkeypatch.setenv("BAD_KEY", KEY)
    async with MockUpstream("bad") as bad:
        answer = {
            "id": "resp_f",
            "object": "response",
            "created_at": 1,
            "status": status,
            "model": "bad-model",
            "output": [],
            "error": {"code": "server_error", "message": "boom"} if status == "failed" else None,
            "incomplete_details": {"reason": f"quota of {KEY}"},
            "usage": {"input_tokens": 2, "output_tokens": 1, "total_tokens": 3},
        }
        bad.behave("status", status=200, body=answer)
        async with running_gateway(
            tmp_path, ALONE.format(bad=bad.base_url, good=bad.base_url)
        ) as gw:
            reply = await post(gw, "/v1/responses")
    assert reply.status_code == 200
    assert KEY.encode() not in reply.content
    payload = orjson.loads(reply.content)
    assert payload["status"] == status
    assert payload["incomplete_details"] == {"reason": "quota of [redacted]"}
    assert ledger(tmp_path) == [row]


async def test_a_failed_responses_object_counts_against_its_deployment(tmp_path, monkeypatch):
    """A deployment that answers failed Responses objects cools down as one that answers
    5xx does: with `failure_threshold: 1`, the next request goes to the next deployment."""
    monkeypatch.setenv("BAD_KEY", KEY)
    failed = {"id": "resp_f", "object": "response", "status": "failed", "output": []}
    failed["error"] = {"code": "server_error", "message": "boom"}
    once = POLICY.replace("failure_threshold: 5", "failure_threshold: 1, cooldown_s: 60")
    async with MockUpstream("bad") as bad, MockUpstream("good") as good:
        bad.behave("status", status=200, body=failed)
        async with running_gateway(
            tmp_path, once.format(bad=bad.base_url, good=good.base_url)
        ) as gw:
            first = await post(gw, "/v1/responses")
            second = await post(gw, "/v1/responses")
    assert orjson.loads(first.content)["status"] == "failed"
    assert first.headers["x-gateway-deployment"] == "bad/bad-model"
    assert second.headers["x-gateway-deployment"] == "good/good-model"


async def test_an_upstream_out_of_credit_402_fails_over(tmp_path, monkeypatch):
    """402 (our account's credit, not the caller's request): the next deployment answers;
    with none left, the gateway's own 502."""
    monkeypatch.setenv("BAD_KEY", KEY)
    async with MockUpstream("bad") as bad, MockUpstream("good") as good:
        bad.behave("status", status=402)
        async with running_gateway(
            tmp_path, POLICY.format(bad=bad.base_url, good=good.base_url)
        ) as gw:
            reply = await post(gw, "/v1/chat/completions")
        assert reply.status_code == 200
        assert reply.headers["x-gateway-deployment"] == "good/good-model"
        (tmp_path / "alone").mkdir()
        async with running_gateway(
            tmp_path / "alone", ALONE.format(bad=bad.base_url, good=bad.base_url)
        ) as gw:
            reply = await post(gw, "/v1/chat/completions")
    assert reply.status_code == 502
    assert orjson.loads(reply.content)["error"]["code"] == "upstream_unavailable"


async def test_a_relayed_refusal_whose_code_is_text_keeps_it_out_of_the_records(
    tmp_path, monkeypatch
):
    """An upstream's 4xx may put anything in `code` (here the prompt, quoted back): its
    caller gets it as sent, but the ledger (like the access line and the span, which
    read the same field) keeps only that it was no code."""
    prompt = "my ssn is 078-05-1120 and my password is hunter2 " * 400
    refusal = {"error": {"message": "nope", "type": "invalid_request_error", "code": prompt}}
    monkeypatch.setenv("BAD_KEY", KEY)
    async with MockUpstream("bad") as bad:
        bad.behave(Behaviour("status", status=422, body=refusal))
        async with running_gateway(
            tmp_path, ALONE.format(bad=bad.base_url, good=bad.base_url)
        ) as gw:
            client = await gw.openai()
            with pytest.raises(openai.UnprocessableEntityError) as caught:
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": prompt}]
                )
    assert caught.value.code == prompt
    assert ledger(tmp_path) == [(422, "refused", UNRECORDED_CODE)]


async def test_a_relayed_refusal_does_not_tell_where_the_upstream_runs(tmp_path, monkeypatch):
    """An upstream's 4xx quoting its own address (an internal host:port, here 127.0.0.1's
    port, with and without the URL around it) reaches the caller without it."""
    monkeypatch.setenv("BAD_KEY", KEY)
    async with MockUpstream("bad") as bad:
        address = bad.base_url.split("://", 1)[1].split("/", 1)[0]  # 127.0.0.1:PORT
        host = address.split(":")[0]
        message = f"url {bad.base_url}/chat host {address} ip {host} key {KEY}"
        bad.behave("status", status=400, body={"error": {"message": message, "code": address}})
        async with running_gateway(
            tmp_path, ALONE.format(bad=bad.base_url, good=bad.base_url)
        ) as gw:
            reply = await post(gw, "/v1/chat/completions")
    assert reply.status_code == 400
    assert host.encode() not in reply.content and KEY.encode() not in reply.content
    error = orjson.loads(reply.content)["error"]
    assert error["message"] == "url [upstream] host [redacted] ip [redacted] key [redacted]"
    assert error["code"] == "[redacted]"
