"""The gateway's pooled upstream connections read an answer only for the request that
was written on them, and a whole answer only up to a bound (probe p22).

- An upstream (or a proxy before it) that answers one request twice, the second answer
  late, handed that answer to the next request on the pooled connection, of any team:
  team beta got team alpha's prompt back and its own request was never sent. Bytes on
  an idle connection now close it.
- An endless or huge whole answer was read into memory (4 GB): past the bound the
  attempt fails (502), the connection dropped.
- A malformed answer's log lines quoted the URL (a `${VAR}` token in the `api_base`
  path) and the body's first bytes (completion text): now the failure's kind only.

Real gateway, a raw-socket upstream, the official openai SDK."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import openai
import pytest

from gateway.providers import upstream_connections
from tests.support.gateway import running_gateway

POLICY = """
providers:
  raw: {{type: openai-compatible, api_base: "http://127.0.0.1:{port}/v1/acct/${{P22_PATH_TOKEN}}"}}
models:
  m: {{deployments: [{{provider: raw, model: m}}], routing: {{retries: 0}}}}
routing: {{timeout_s: 10, attempt_timeout_s: 5, retries: 0}}
teams:
  alpha: {{models: ["*"]}}
  beta: {{models: ["*"]}}
"""
PATH_TOKEN = "pathtok-SECRET-5555aaaa"

Answer = Callable[[asyncio.StreamWriter, str, int], Awaitable[None]]


def answer_bytes(text: str) -> bytes:
    body = json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    ).encode()
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b" % (
        len(body),
        body,
    )


async def read_request(reader: asyncio.StreamReader) -> str | None:
    """The prompt of the next request on the connection (None at its end)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = json.loads(await reader.readexactly(length))
    return str(body["messages"][-1]["content"])


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[int, list[str], list[Answer]]]:
    """A raw upstream: each request's prompt is logged; `answers[0]` answers the first
    request it gets, every later one gets `echo: <prompt>`."""
    prompts: list[str] = []
    answers: list[Answer] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (prompt := await read_request(reader)) is not None:
            prompts.append(prompt)
            if len(prompts) == 1 and answers:
                await answers[0](writer, prompt, 0)
            else:
                writer.write(answer_bytes(f"echo: {prompt}"))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, prompts, answers


def ask(team_client: openai.AsyncOpenAI, prompt: str) -> Awaitable[object]:
    return team_client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": prompt}]
    )


async def test_a_late_second_answer_never_reaches_another_request(tmp_path, upstream, monkeypatch):
    port, prompts, answers = upstream
    monkeypatch.setenv("P22_PATH_TOKEN", PATH_TOKEN)

    async def twice(writer: asyncio.StreamWriter, prompt: str, number: int) -> None:
        writer.write(answer_bytes("first answer"))
        await writer.drain()
        await asyncio.sleep(0.3)  # the connection is back in the pool by now
        writer.write(answer_bytes(f"SMUGGLED duplicate of: {prompt}"))

    answers.append(twice)
    async with running_gateway(tmp_path, POLICY.format(port=port)) as gw:
        alpha, beta = (
            await gw.openai("alpha", max_retries=0),
            await gw.openai("beta", max_retries=0),
        )
        first = await ask(alpha, "alpha's secret plan")
        assert first.choices[0].message.content == "first answer"  # type: ignore[attr-defined]
        await asyncio.sleep(0.6)  # the late answer has arrived on the idle connection
        second = await ask(beta, "beta question")
        assert second.choices[0].message.content == "echo: beta question"  # type: ignore[attr-defined]
    assert prompts == ["alpha's secret plan", "beta question"]


async def test_two_answers_in_one_write_close_the_connection(tmp_path, upstream, monkeypatch):
    port, prompts, answers = upstream
    monkeypatch.setenv("P22_PATH_TOKEN", PATH_TOKEN)

    async def twice(writer: asyncio.StreamWriter, prompt: str, number: int) -> None:
        writer.write(answer_bytes("first answer") + answer_bytes(f"SMUGGLED: {prompt}"))

    answers.append(twice)
    async with running_gateway(tmp_path, POLICY.format(port=port)) as gw:
        alpha, beta = (
            await gw.openai("alpha", max_retries=0),
            await gw.openai("beta", max_retries=0),
        )
        await ask(alpha, "alpha's secret plan")
        second = await ask(beta, "beta question")
        assert second.choices[0].message.content == "echo: beta question"  # type: ignore[attr-defined]
    assert prompts == ["alpha's secret plan", "beta question"]


@pytest.mark.parametrize("endless", [False, True], ids=["too-large", "endless"])
async def test_a_whole_answer_past_the_bound_fails_the_attempt(
    tmp_path, upstream, monkeypatch, endless
):
    port, _, answers = upstream
    monkeypatch.setenv("P22_PATH_TOKEN", PATH_TOKEN)
    monkeypatch.setattr(upstream_connections, "MAX_ANSWER_BYTES", 1_000_000)

    async def huge(writer: asyncio.StreamWriter, prompt: str, number: int) -> None:
        if not endless:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
            writer.write(b"content-length: 2000000\r\n\r\n" + b" " * 2_000_000)
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
        writer.write(b"transfer-encoding: chunked\r\n\r\n")
        for _ in range(10_000):  # 10,000 x 64 KiB: far past the bound, never ended
            writer.write(b"10000\r\n" + b" " * 0x10000 + b"\r\n")
            await writer.drain()

    answers.append(huge)
    async with running_gateway(tmp_path, POLICY.format(port=port)) as gw:
        alpha = await gw.openai("alpha", max_retries=0)
        with pytest.raises(openai.APIStatusError) as failed:
            await ask(alpha, "hi")
        assert failed.value.status_code == 502


async def test_a_malformed_answer_logs_neither_the_url_s_secret_nor_the_body(
    tmp_path, upstream, monkeypatch, caplog
):
    port, _, answers = upstream
    monkeypatch.setenv("P22_PATH_TOKEN", PATH_TOKEN)
    caplog.set_level(logging.INFO)

    async def no_status_line(writer: asyncio.StreamWriter, prompt: str, number: int) -> None:
        writer.write(b'{"choices": [{"message": {"content": "Hello there friend"}}]}\r\n\r\n')
        writer.close()

    answers.append(no_status_line)
    log = tmp_path / "access.log"
    async with running_gateway(tmp_path, POLICY.format(port=port), access_log=str(log)) as gw:
        alpha = await gw.openai("alpha", max_retries=0)
        with pytest.raises(openai.APIStatusError) as failed:
            await ask(alpha, "hi")
        assert failed.value.status_code == 502
    logged = log.read_text() + "\n".join(
        json.dumps(getattr(r, "fields", {})) + r.getMessage() for r in caplog.records
    )
    assert "ClientResponseError" in logged or "upstream" in logged
    assert PATH_TOKEN not in logged and "Hello there friend" not in logged
