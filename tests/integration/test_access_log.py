"""The access log and the process log as an operator meets them: one line per request,
no secrets at any log level, lines that survive the shutdown deadline and logrotate.

`gateway serve` runs as a real subprocess where the behaviour is the process's
(log levels, signals); elsewhere the gateway runs in-process on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest
import uvicorn

from gateway.app import build_app
from gateway.auth.access_tokens import mint_with_current_key
from gateway.context import RequestContext
from gateway.logs import AccessLog
from gateway.settings import Settings
from tests.support.gateway import running_gateway
from tests.support.processes import GATEWAY, free_port, run_gateway
from tests.support.serving import serve_process
from tests.support.upstream import Behaviour, MockUpstream

POLICY = """
providers:
  demo: {{type: mock}}
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  offline:
    deployments: [{{provider: demo, model: mock-1}}]
  slow:
    deployments: [{{provider: up, model: upstream-model}}]
teams:
  demo: {{models: ["*"]}}
"""
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = run_gateway(*args, cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr
    return done


def wait_until(check: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


async def eventually(check: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_debug_log_level_logs_no_token_client_secret_or_private_key(tmp_path):
    """GATEWAY_LOG_LEVEL=debug shows the gateway's debug lines, not a token, secret or key."""
    with serve_process(tmp_path, {"GATEWAY_LOG_LEVEL": "debug"}) as served:
        origin, server = served.origin, served.process
        created = json.loads(
            run("clients", "create", "--team", "demo", cwd=tmp_path, env={}).stdout
        )
        with httpx.Client(base_url=origin) as http:
            reply = http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(created["client_id"], created["client_secret"]),
            )
            assert reply.status_code == 200, reply.text
            token = reply.json()["access_token"]
            bearer = {"Authorization": f"Bearer {token}"}
            assert http.post("/v1/chat/completions", json=CHAT, headers=bearer).is_success
            assert http.get("/v1/models", headers=bearer).is_success
            refused = http.get("/v1/models", headers={"Authorization": "Bearer x.y.z"})
            assert refused.status_code == 401
        server.terminate()
        server.wait(40)
    output = (tmp_path / "serve.stdout").read_text() + (tmp_path / "serve.stderr").read_text()
    (jwk_json,) = (
        value
        for row in sqlite3.connect(tmp_path / "gateway.db").execute("select * from signing_keys")
        for value in row
        if isinstance(value, str) and '"d"' in value
    )
    assert token not in output
    assert created["client_secret"] not in output
    assert json.loads(jwk_json)["d"] not in output
    assert '"d":' not in output.replace('\\"', '"')
    logged = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    levels = [(line["level"], line["logger"]) for line in logged]
    assert ("debug", "gateway.auth.access_tokens") in levels  # the level still applies to ours
    assert {name.split(".")[0] for level, name in levels if level == "debug"} <= {
        "gateway",
        "uvicorn",
    }


async def test_every_request_gets_one_access_line_with_who_and_how_it_ended(tmp_path):
    """OAuth (failed logins too), models, admin, unknown paths and wrong methods each log a line."""
    log = tmp_path / "access.log"
    async with running_gateway(
        tmp_path, POLICY.format(base="http://127.0.0.1:9/v1"), access_log=str(log)
    ) as gw:
        _, secret = await gw.services.clients.create("demo", "app", ["gateway:invoke"], "alice")
        client_id = (await gw.services.clients.list())[0].client_id
        token = await gw.token(team="demo", subject="bob")
        bearer = {"Authorization": f"Bearer {token}"}
        form = {"grant_type": "client_credentials"}
        async with httpx.AsyncClient(base_url=gw.origin) as http:
            replies = [
                await http.post("/oauth/token", data=form, auth=("c-nope", "wrong")),
                await http.post("/oauth/token", data=form, auth=(client_id, secret)),
                await http.get("/v1/models", headers={"Authorization": "Bearer bad"}),
                await http.get("/v1/models", headers=bearer),
                await http.get("/v1/models/nope", headers=bearer),
                await http.get("/admin/policy", headers=bearer),
                await http.get("/no/such/path"),
                await http.get("/oauth/token"),
                await http.get("/.well-known/jwks.json"),
                await http.post(
                    "/v1/chat/completions", json={**CHAT, "model": "offline"}, headers=bearer
                ),
            ]
        issued = replies[1].json()["access_token"]
    lines = lines_of(log)
    assert [line["request_id"] for line in lines] == [r.headers["x-request-id"] for r in replies]
    assert [line["status"] for line in lines] == [r.status_code for r in replies]
    assert [line["status"] for line in lines] == [401, 200, 401, 200, 404, 403, 404, 405, 200, 200]
    assert [(line["outcome"], line["error_code"]) for line in lines[:8]] == [
        ("refused", "invalid_client"),
        ("ok", None),
        ("refused", "invalid_api_key"),
        ("ok", None),
        ("refused", "model_not_found"),
        ("refused", "insufficient_scope"),
        ("refused", "not_found"),
        ("refused", "method_not_allowed"),
    ]
    assert [line.get("path") for line in lines[:9]] == [
        "/oauth/token",
        "/oauth/token",
        "/v1/models",
        "/v1/models",
        "/v1/models/nope",
        "/admin/policy",
        "/no/such/path",
        "/oauth/token",
        "/.well-known/jwks.json",
    ]
    assert [line["client_id"] for line in lines[:2]] == ["c-nope", client_id]
    assert (lines[3]["team"], lines[3]["subject"]) == ("demo", "bob")
    assert (lines[9]["endpoint"], lines[9]["model"]) == ("chat", "offline")
    assert all(line["latency_ms"] >= 0 for line in lines)
    # Where each came from: failed logins and refused tokens can be traced to an address.
    assert [line["client"] for line in lines] == ["127.0.0.1"] * len(lines)
    text = log.read_text()
    assert secret not in text and issued not in text and token not in text


def test_sighup_after_logrotate_moves_the_file_reopens_it(tmp_path):
    """logrotate (create mode) + `kill -HUP`: old lines stay in the moved file, new ones
    go to a new file, and the gateway keeps serving."""
    log = tmp_path / "access.log"
    with serve_process(tmp_path, {"GATEWAY_ACCESS_LOG": str(log)}) as served:
        origin, server, err = served.origin, served.process, served.stderr_path
        token = run("token", "--team", "demo", cwd=tmp_path, env={}).stdout.split()[-1]
        bearer = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=origin) as http:
            first = http.post("/v1/chat/completions", json=CHAT, headers=bearer)
            assert first.status_code == 200
            # At once: the line may still be buffered, and must reach the moved file.
            log.rename(tmp_path / "access.log.1")
            server.send_signal(signal.SIGHUP)
            wait_until(log.exists)
            assert server.poll() is None
            second = http.post("/v1/chat/completions", json=CHAT, headers=bearer)
            assert second.status_code == 200
            wait_until(lambda: len(lines_of(log)) == 1)
            server.send_signal(signal.SIGHUP)  # nothing moved: it goes on with the same file
            third = http.get("/v1/models", headers=bearer)
            wait_until(lambda: len(lines_of(log)) == 2)
        server.terminate()  # uvicorn's own SIGTERM handling is untouched
        assert server.wait(40) in (0, -15)
    moved = lines_of(tmp_path / "access.log.1")
    assert [line["request_id"] for line in moved] == [first.headers["x-request-id"]]
    assert [line["request_id"] for line in lines_of(log)] == [
        second.headers["x-request-id"],
        third.headers["x-request-id"],
    ]
    assert "Traceback" not in err.read_text()


async def invoke_token(settings: Settings) -> str:
    return await mint_with_current_key(
        settings.database_url,
        issuer=settings.issuer_url,
        audience=settings.audience,
        team="demo",
        subject="tester",
        client_id="tests",
        scopes=["gateway:invoke"],
        ttl_s=600,
        now=time.time(),
    )


@asynccontextmanager
async def serving(app: Any, graceful_s: int) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    """Serve `app` as `gateway serve` does, but with a `graceful_s` shutdown deadline."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,
        access_log=False,
        http="httptools",
        loop="none",
        timeout_graceful_shutdown=graceful_s,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started or task.done(), within_s=20)
        assert not task.done(), "the gateway failed to start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


async def test_stream_cut_at_the_shutdown_deadline_still_gets_its_access_line(tmp_path):
    """A stream longer than the graceful-shutdown deadline is cancelled by uvicorn, which
    then shuts the lifespan down at once; its access line is written all the same.

    `gateway serve` fixes that deadline at 30 s, so this runs the same app under
    uvicorn in-process with a 1 s deadline: the real lifespan, the real cancellation.
    """
    log = tmp_path / "access.log"
    async with MockUpstream(name="slow") as up:
        up.behave(Behaviour(mode="ok", chunks=40, chunk_delay_s=0.25))
        policies = tmp_path / "policies"
        policies.mkdir()
        (policies / "bundle.yaml").write_text(POLICY.format(base=up.base_url))
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{tmp_path}/gateway.db",
            policy_dir=policies,
            access_log=str(log),
        )
        app = build_app(settings)
        async with serving(app, graceful_s=1) as (origin, server):
            token = await invoke_token(settings)
            got: list[str] = []

            async def consume() -> None:
                async with httpx.AsyncClient() as http:
                    try:
                        async with http.stream(
                            "POST",
                            f"{origin}/v1/chat/completions",
                            json={**CHAT, "model": "slow", "stream": True},
                            headers={"Authorization": f"Bearer {token}"},
                            timeout=30,
                        ) as reply:
                            async for line in reply.aiter_lines():
                                got.append(line)
                    except httpx.HTTPError:
                        pass  # the server cut it

            reader = asyncio.create_task(consume())
            await eventually(lambda: len(got) >= 2)
            server.should_exit = True
        await asyncio.wait_for(reader, 10)
    (line,) = lines_of(log)
    assert (line["model"], line["stream"], line["outcome"]) == ("slow", True, "cancelled")
    assert line["output_tokens"] > 0  # settled for what was generated


def test_a_line_recorded_after_close_is_written_not_dropped(tmp_path):
    """A request that ends after the lifespan closed the log still gets its line."""
    log = tmp_path / "access.log"
    access_log = AccessLog(str(log))
    access_log.close()
    access_log.record(RequestContext(request_id="req_late", endpoint="chat", model="m"))
    assert [line["request_id"] for line in lines_of(log)] == ["req_late"]


async def test_a_refused_token_names_the_failed_claim_in_the_access_line(tmp_path):
    """A token for another audience or issuer is a 401; the access line says which claim
    failed (the caller's message too), never the value the gateway expected."""
    log = tmp_path / "access.log"
    async with running_gateway(
        tmp_path, POLICY.format(base="http://127.0.0.1:9/v1"), access_log=str(log)
    ) as gw:
        settings = gw.settings
        minted = {
            "aud": await gw.token(team="demo", subject="bob", audience="someone-else"),
            "iss": await gw.token(team="demo", subject="bob", issuer="https://elsewhere.example"),
        }
        async with httpx.AsyncClient(base_url=gw.origin) as http:
            replies = {
                claim: await http.post(
                    "/v1/chat/completions",
                    json={**CHAT, "model": "offline"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                for claim, token in minted.items()
            }
    for claim, reply in replies.items():
        assert reply.status_code == 401
        assert f"{claim} claim" in reply.json()["error"]["message"]
        assert settings.audience not in reply.text and settings.issuer_url not in reply.text
    lines = lines_of(log)
    assert [(line["status"], line["error_detail"]) for line in lines] == [
        (401, "aud claim"),
        (401, "iss claim"),
    ]


CONTENT_POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat: {{deployments: [{{provider: up, model: upstream-chat}}]}}
teams:
  open: {{models: ["*"], guardrails: [pii], log_content: true}}
  demo: {{models: ["*"], guardrails: [pii]}}
guardrails:
  pii:
    input:
      - {{detector: email, action: redact}}
    output:
      - {{detector: credit_card, action: redact}}
"""


async def test_a_team_that_logs_content_gets_its_redacted_text_in_the_access_line(tmp_path):
    """SPEC §7: with `log_content` the team's access lines carry the prompt and the
    answer, whole or streamed, as the guardrails left them; another team's carry none."""
    log = tmp_path / "access.log"
    async with MockUpstream("up") as up:
        up.behave(Behaviour("ok", content="card 4111 1111 1111 1111 on file", chunks=3))
        policy = CONTENT_POLICY.format(base=up.base_url)
        async with running_gateway(tmp_path, policy, access_log=str(log)) as gw:
            messages = [{"role": "user", "content": "mail ann@example.com please"}]
            for team in ("open", "demo"):
                client = await gw.openai(team)
                await client.chat.completions.create(model="chat", messages=messages)
                stream = await client.chat.completions.create(
                    model="chat", messages=messages, stream=True
                )
                async for _ in stream:
                    pass
            await eventually(lambda: len(lines_of(log)) == 4)
        sent = [r.json["messages"][0]["content"] for r in up.requests]
    whole, streamed, *others = lines_of(log)
    assert all("ann@example.com" not in text for text in sent)  # redacted upstream too
    for line in (whole, streamed):
        assert line["team"] == "open"
        assert line["prompt"] == sent[0]
        assert "ann@example.com" not in line["prompt"] and "mail" in line["prompt"]
        assert "4111" not in line["completion"] and "on file" in line["completion"]
        assert line["prompt_truncated"] is False and line["completion_truncated"] is False
    assert streamed["stream"] is True
    for line in others:
        assert line["team"] == "demo"
        assert not {"prompt", "completion"} & set(line)
        assert "ann@" not in json.dumps(line) and "on file" not in json.dumps(line)


def test_content_in_the_access_line_is_cut_at_its_bound():
    """A long prompt or answer cannot write a multi-megabyte line: each field is cut,
    and says so."""
    from gateway.logs import CONTENT_MAX_CHARS, request_fields

    ctx = RequestContext(request_id="r", endpoint="chat", model="m")
    ctx.logs_content = True
    ctx.request_body = {"messages": [{"role": "user", "content": "p" * (CONTENT_MAX_CHARS + 5)}]}
    ctx.answer_texts = ["a" * CONTENT_MAX_CHARS, "b"]
    fields = request_fields(ctx)
    assert fields["prompt"] == "p" * CONTENT_MAX_CHARS and fields["prompt_truncated"] is True
    assert fields["completion"] == "a" * CONTENT_MAX_CHARS
    assert fields["completion_truncated"] is True
    ctx.logs_content = False
    assert "prompt" not in request_fields(ctx)


def test_sighup_with_the_log_on_stderr_does_not_end_the_gateway(tmp_path):
    """There is no file to reopen; a HUP (a habit, a supervisor's reload) used to end the
    process with the default action: every in-flight request cut."""
    with serve_process(tmp_path, {"GATEWAY_ACCESS_LOG": "stderr"}) as served:
        server = served.process
        server.send_signal(signal.SIGHUP)
        with httpx.Client(base_url=served.origin) as http:
            for _ in range(20):  # the signal is taken at once; a few answers prove it
                assert http.get("/healthz").status_code == 200
        assert server.poll() is None
        server.terminate()
        assert server.wait(40) in (0, -15)


def test_sighup_while_the_server_starts_does_not_end_it(tmp_path):
    """A logrotate that lands while the gateway starts (its port already open, the app's
    reopen handler not yet in place): the HUP is ignored. Its default action ended the
    server at once, nothing logged (round-2 probe)."""
    port = free_port()
    env = {**os.environ, "GATEWAY_PORT": str(port), "GATEWAY_ACCESS_LOG": str(tmp_path / "a.log")}
    err_path = tmp_path / "serve.stderr"
    with err_path.open("wb") as err:
        server = subprocess.Popen([GATEWAY, "serve"], cwd=tmp_path, env=env, stderr=err)
    try:
        wait_until(lambda: b"Uvicorn running" in err_path.read_bytes(), within_s=60)
        server.send_signal(signal.SIGHUP)  # before the app's lifespan has started
        origin = f"http://127.0.0.1:{port}"
        wait_until(lambda: server.poll() is not None or _healthy(origin), within_s=60)
        assert server.poll() is None, err_path.read_text()
    finally:
        server.terminate()
        server.wait(40)


def _healthy(origin: str) -> bool:
    try:
        return httpx.get(f"{origin}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


BLOCK_POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat: {{deployments: [{{provider: up, model: upstream-chat}}]}}
teams:
  open: {{models: ["*"], guardrails: [words], log_content: true}}
guardrails:
  words:
    output:
      - {{keywords: ["project falcon"], name: kwout, action: block}}
"""


async def test_a_blocked_answer_logs_no_completion_streamed_or_whole(tmp_path):
    """README: a blocked answer is not logged. A stream cut by an output block logged the
    text sent before the cut as `completion` (probe p12)."""
    log = tmp_path / "access.log"
    text = "streamed prefix text that goes out first, then project falcon and more"
    async with MockUpstream("up") as up:
        up.behave(Behaviour("ok", content=text, chunks=len(text) // 4))
        policy = BLOCK_POLICY.format(base=up.base_url)
        async with running_gateway(tmp_path, policy, access_log=str(log)) as gw:
            client = await gw.openai("open")
            messages = [{"role": "user", "content": "hi"}]
            with pytest.raises(openai.BadRequestError):
                await client.chat.completions.create(model="chat", messages=messages)
            stream = await client.chat.completions.create(
                model="chat", messages=messages, stream=True
            )
            got = ""
            with pytest.raises(openai.APIError):
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        got += chunk.choices[0].delta.content
            await eventually(lambda: len(lines_of(log)) == 2)
    assert got.startswith("streamed prefix")  # the client did get the start
    for line in lines_of(log):
        assert line["guardrails"] == ["kwout:block:output"]
        assert "completion" not in line and "prompt" in line
        assert "streamed prefix" not in json.dumps(line)


def test_sighup_right_after_serve_is_launched_does_not_end_it(tmp_path):
    """A HUP while `gateway serve` is still importing (its first ~0.7 s, before the CLI
    set its own ignore) ended it with exit 129 (probe p7): the entry point ignores it
    first thing."""
    port = free_port()
    env = {**os.environ, "GATEWAY_PORT": str(port), "GATEWAY_ACCESS_LOG": str(tmp_path / "a.log")}
    err_path = tmp_path / "serve.stderr"
    with err_path.open("wb") as err:
        server = subprocess.Popen([GATEWAY, "serve"], cwd=tmp_path, env=env, stderr=err)
    try:
        time.sleep(0.25)  # the interpreter is up, the CLI's imports are not done
        server.send_signal(signal.SIGHUP)
        origin = f"http://127.0.0.1:{port}"
        wait_until(lambda: server.poll() is not None or _healthy(origin), within_s=60)
        assert server.poll() is None, err_path.read_text()
    finally:
        server.terminate()
        server.wait(40)
