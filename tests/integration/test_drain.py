"""A rolling restart as a client meets it: after SIGTERM the replica says it is not ready,
refuses new requests with a retryable 503, lets the stream under way finish, and exits 0."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time

import httpx2 as httpx
import openai
import orjson
import pytest

from tests.support.processes import run_gateway
from tests.support.serving import serve_process
from tests.support.upstream import Behaviour, MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  slow:
    deployments: [{{provider: up, model: upstream-model}}]
    price: {{input_per_mtok: 0.15, output_per_mtok: 0.60}}
teams:
  demo: {{models: ["*"]}}
"""
CHAT = {"model": "slow", "messages": [{"role": "user", "content": "hi"}]}


def _token(tmp_path) -> str:
    done = run_gateway("token", "--team", "demo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


async def test_sigterm_lets_a_stream_finish_and_refuses_new_requests(tmp_path):
    """Mid-stream SIGTERM: /readyz 503 at once, a new chat request 503 server_shutting_down,
    the stream ends with every chunk, and the process exits 0."""
    await _sigterm_mid_stream(tmp_path, {}, ())


async def test_under_workers_each_worker_drains_the_same_way(tmp_path, redis_url):
    """`serve --workers 2`: the supervisor passes SIGTERM on, and the worker with the
    stream drains it to the end while both answer /readyz and new requests with 503."""
    env = {"GATEWAY_REDIS_URL": redis_url, "TMPDIR": str(tmp_path)}
    await _sigterm_mid_stream(tmp_path, env, ("--workers", "2"))


async def _sigterm_mid_stream(tmp_path, env: dict[str, str], args: tuple[str, ...]) -> None:
    async with MockUpstream(name="up") as up:
        up.behave(Behaviour(chunks=8, chunk_delay_s=0.6))  # a ~5 s stream
        (tmp_path / "policies").mkdir()
        (tmp_path / "policies" / "bundle.yaml").write_text(POLICY.format(base=up.base_url))
        env = {"GATEWAY_DRAIN_GRACE_S": "20", **env}
        with serve_process(tmp_path, env, args) as server:
            token = _token(tmp_path)
            client = openai.AsyncOpenAI(
                base_url=f"{server.origin}/v1", api_key=token, max_retries=0
            )
            stream = await client.chat.completions.create(**CHAT, stream=True)
            pieces = []
            async with httpx.AsyncClient(base_url=server.origin) as http:
                async for chunk in stream:
                    if not (chunk.choices and chunk.choices[0].delta.content):
                        continue  # only the first content piece sends the (one) SIGTERM
                    pieces.append(chunk.choices[0].delta.content)
                    if len(pieces) == 1:
                        server.process.send_signal(signal.SIGTERM)
                        # The next server tick begins the drain; under --workers, the
                        # supervisor passes the signal on at its next check (0.5 s).
                        ready = await _readyz_once_draining(http, within_s=2.0)
                        refused = await http.post(
                            "/v1/chat/completions",
                            json=CHAT,
                            headers={"Authorization": f"Bearer {token}"},
                        )
            await client.close()
            assert ready.status_code == 503
            assert ready.json()["status"] == "draining"
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "server_shutting_down"
            assert refused.json()["error"]["type"] == "api_error"
            assert refused.headers["connection"] == "close"
            assert "x-request-id" in refused.headers
            assert "".join(pieces) == "mock reply from up"
            assert len(up.requests) == 1  # the refused request never reached the upstream
            code = await asyncio.to_thread(server.process.wait, 30)
            assert code == 0, server.stderr()
        assert "drain_started" in server.stderr()
        # Its ledger row names the caller (the token verified) and the model its body
        # named: finance can bill the team, and per-model counts keep it (probe p18).
        with sqlite3.connect(tmp_path / "gateway.db") as db:
            rows = db.execute(
                "SELECT team, subject, client_id, model FROM usage_ledger WHERE status = 503"
            ).fetchall()
        assert len(rows) == 1 and rows[0][0] == "demo" and rows[0][1] and rows[0][2], rows
        assert rows[0][3] == CHAT["model"], rows


@pytest.mark.parametrize(
    ("stop", "ignore_sigint"),
    [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGINT, True)],
    ids=["SIGTERM", "SIGINT", "SIGINT-background-job"],
)
async def test_a_stream_longer_than_the_grace_is_cut_and_the_exit_says_so(
    tmp_path, stop, ignore_sigint
):
    """GATEWAY_DRAIN_GRACE_S=1 with a 10 s stream: the stream is cut long before its end,
    and the exit status is 128 + the signal (143, or 130 for a Ctrl-C): not every request
    finished. Before, a drain begun by SIGINT in a server started as a shell's background
    job (SIGINT ignored until the server's own handler) exited 0 all the same."""
    async with MockUpstream(name="up") as up:
        up.behave(Behaviour(chunks=20, chunk_delay_s=0.5))
        (tmp_path / "policies").mkdir()
        (tmp_path / "policies" / "bundle.yaml").write_text(POLICY.format(base=up.base_url))
        grace = {"GATEWAY_DRAIN_GRACE_S": "1"}
        with serve_process(tmp_path, grace, ignore_sigint=ignore_sigint) as server:
            token = _token(tmp_path)
            client = openai.AsyncOpenAI(
                base_url=f"{server.origin}/v1", api_key=token, max_retries=0
            )
            stream = await client.chat.completions.create(**CHAT, stream=True)
            started = time.monotonic()
            received = 0
            try:
                async for _chunk in stream:
                    received += 1
                    if received == 1:
                        server.process.send_signal(stop)
            except (openai.APIError, httpx.HTTPError):
                pass  # the connection ends mid-stream: what a cut looks like to a client
            await client.close()
            elapsed = time.monotonic() - started
            code = await asyncio.to_thread(server.process.wait, 30)
        assert elapsed < 8, elapsed  # 1 s of grace, then uvicorn's 2 s; the stream needs 10
        assert received < 20
        assert code == 128 + stop, server.stderr()


@pytest.mark.parametrize("endpoint", ["chat/completions", "responses"])
async def test_a_stream_cut_by_the_grace_ends_with_an_error_event_and_an_error_row(
    tmp_path, endpoint
):
    """A stream still running when the grace runs out gets a 503 api_error event saying the
    gateway is shutting down (the Responses `event: error` shape on /v1/responses) and then
    a clean end, no [DONE]; its ledger row says 503 cancelled, charged for what was
    generated; no traceback in the log; the exit status says a request was cut (143)."""
    async with MockUpstream(name="up") as up:
        up.behave(Behaviour(chunks=200, chunk_delay_s=0.1, content="word " * 200))  # ~20 s
        (tmp_path / "policies").mkdir()
        (tmp_path / "policies" / "bundle.yaml").write_text(POLICY.format(base=up.base_url))
        with serve_process(tmp_path, {"GATEWAY_DRAIN_GRACE_S": "1"}) as server:
            token = _token(tmp_path)
            if endpoint == "responses":
                body = {"model": "slow", "input": "hi", "stream": True}
            else:
                body = {**CHAT, "stream": True}
            lines: list[str] = []
            signalled = 0.0
            async with httpx.AsyncClient(base_url=server.origin, timeout=30) as http:
                async with http.stream(
                    "POST",
                    f"/v1/{endpoint}",
                    json=body,
                    headers={"Authorization": f"Bearer {token}"},
                ) as reply:
                    assert reply.status_code == 200
                    async for line in reply.aiter_lines():  # a cut mid-chunk would raise here
                        if line.startswith("data:") and not signalled:
                            server.process.send_signal(signal.SIGTERM)
                            signalled = time.monotonic()
                        if line:
                            lines.append(line)
            ended_after_s = time.monotonic() - signalled
            code = await asyncio.to_thread(server.process.wait, 30)
        log = server.stderr()
    assert ended_after_s < 2.5, ended_after_s  # the 1 s grace, not uvicorn's later 2 s cut
    assert "data: [DONE]" not in lines
    if endpoint == "responses":
        assert lines[-2] == "event: error"
        error = orjson.loads(lines[-1][5:])
        assert error["type"] == "error"
        # numbered after the last event the client got (the SDK types it a required int)
        sent = [orjson.loads(line[5:]) for line in lines[:-2] if line.startswith("data:")]
        numbers = [event["sequence_number"] for event in sent]
        assert numbers and error["sequence_number"] == numbers[-1] + 1, (numbers, error)
    else:
        error = orjson.loads(lines[-1][5:])["error"]
        assert error["type"] == "api_error"
    assert error["code"] == "server_shutting_down"
    assert "shutting down" in error["message"]
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        db.row_factory = sqlite3.Row
        (row,) = [dict(r) for r in db.execute("SELECT * FROM usage_ledger")]
    assert (row["status"], row["outcome"], row["error_code"]) == (
        503,
        "cancelled",
        "server_shutting_down",
    )
    assert row["stream"] == 1 and row["output_tokens"] > 0 and row["cost_nanousd"] > 0
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log
    assert "drain_cut" in log
    assert code == 128 + signal.SIGTERM, log


async def test_a_whole_answer_still_awaited_when_the_grace_runs_out_gets_a_503(tmp_path):
    """A non-streamed request whose upstream is still thinking at the grace's end is
    answered 503 server_shutting_down (retryable), not a dropped connection; its row says so,
    charged the prompt that upstream has (counted here: estimated), as a client's hang-up
    before its answer is; it was charged nothing."""
    async with MockUpstream(name="up") as up:
        up.behave(Behaviour(delay_s=20))
        (tmp_path / "policies").mkdir()
        (tmp_path / "policies" / "bundle.yaml").write_text(POLICY.format(base=up.base_url))
        with serve_process(tmp_path, {"GATEWAY_DRAIN_GRACE_S": "1"}) as server:
            token = _token(tmp_path)
            async with httpx.AsyncClient(base_url=server.origin, timeout=30) as http:
                asked = asyncio.create_task(
                    http.post(
                        "/v1/chat/completions",
                        json=CHAT,
                        headers={"Authorization": f"Bearer {token}"},
                    )
                )
                await up.wait_for_requests(1)
                server.process.send_signal(signal.SIGTERM)
                reply = await asyncio.wait_for(asked, 5)
            code = await asyncio.to_thread(server.process.wait, 30)
        log = server.stderr()
    assert reply.status_code == 503
    assert reply.json()["error"]["code"] == "server_shutting_down"
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        (row,) = db.execute(
            "SELECT status, outcome, error_code, input_tokens, output_tokens, tokens_estimated,"
            " cost_nanousd FROM usage_ledger"
        ).fetchall()
    assert row[:3] == (503, "cancelled", "server_shutting_down")
    input_tokens, output_tokens, estimated, cost = row[3:]
    assert input_tokens > 0 and output_tokens == 0 and estimated == 1
    assert cost == input_tokens * 150  # 0.15 USD per million: 150 nano-USD a token
    assert "Traceback" not in log, log
    assert code == 128 + signal.SIGTERM, log


async def _readyz_once_draining(http: httpx.AsyncClient, within_s: float) -> httpx.Response:
    """/readyz, asked every 0.1 s until it answers 503 or `within_s` has passed. A
    draining server closes idle keep-alive connections: a poll sent on one as it closes
    gets no answer (a client retries such an idempotent GET; so does this loop)."""
    deadline = time.monotonic() + within_s
    while True:
        await asyncio.sleep(0.1)
        try:
            ready = await http.get("/readyz")
        except (httpx.ReadError, httpx.RemoteProtocolError):
            if time.monotonic() > deadline:
                raise
            continue
        if ready.status_code == 503 or time.monotonic() > deadline:
            return ready


def test_drain_grace_out_of_range_is_refused_at_start(tmp_path):
    """GATEWAY_DRAIN_GRACE_S=0 stops `serve` with a message naming the setting."""
    done = run_gateway("serve", cwd=tmp_path, env={"GATEWAY_DRAIN_GRACE_S": "0"})
    assert done.returncode == 2
    assert "GATEWAY_DRAIN_GRACE_S must be from 1 to 3600 (got 0)" in done.stderr
