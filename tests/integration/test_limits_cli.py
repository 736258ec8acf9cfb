"""`gateway usage` beside a one-process gateway (in-process counters, no Redis): it asks
the running server, so a request in flight shows as reserved and as concurrency held."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from contextlib import ExitStack
from pathlib import Path

import aiohttp

from tests.support.processes import GATEWAY, free_port, run_gateway
from tests.support.replicas import BUDGET_POLICY, replica_token
from tests.support.serving import serve_process
from tests.support.upstream import Behaviour, MockUpstream

# A day budget (replicas.BUDGET_POLICY) and the team's rate and concurrency limits.
LIMITS = "    limits: {rpm: 2, concurrency: 5}\n"


def usage(home: Path, env: dict[str, str], *args: str) -> tuple[int, dict | None, str]:  # type: ignore[type-arg]
    shown = run_gateway("usage", "cli", "--json", *args, cwd=home, env=env)
    return shown.returncode, json.loads(shown.stdout) if shown.stdout else None, shown.stderr


async def test_usage_asks_the_running_server_for_its_in_process_counters(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    env = {
        "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/gateway.db",
        "GATEWAY_REDIS_URL": "",
        "GATEWAY_ACCESS_LOG": "off",
    }
    async with MockUpstream("up") as up:
        # Long enough for `gateway usage` (a fresh Python process) to start on a busy machine.
        up.behave(Behaviour(prompt_tokens=7, completion_tokens=10, delay_s=6))
        (tmp_path / "policies").mkdir()
        policy = BUDGET_POLICY.format(base=up.base_url, team="cli", budget=100_000) + LIMITS
        (tmp_path / "policies" / "bundle.yaml").write_text(policy)
        with ExitStack() as stack:
            server = await asyncio.to_thread(stack.enter_context, serve_process(tmp_path, env))
            env["GATEWAY_PORT"] = str(server.port)  # the shell the operator runs it from
            token = await replica_token(env["GATEWAY_DATABASE_URL"], server.port, "cli", "ann")
            request = asyncio.create_task(
                http.post(
                    f"{server.origin}/v1/chat/completions",
                    json={"model": "chat", "messages": [{"role": "user", "content": "hi"}],
                          "max_tokens": 100},
                    headers={"authorization": f"Bearer {token}"},
                )
            )  # fmt: skip
            await up.wait_for_requests(1)
            code, view, stderr = await asyncio.to_thread(usage, tmp_path, env)
            assert code == 0, stderr
            assert view is not None
            day = view["budgets"][0]
            assert (day["used"], day["reserved"]) == (0, 8 + 100)  # the estimate, held
            limits = {r["kind"]: r for r in view["limits"]}
            assert (limits["concurrency"]["used"], limits["concurrency"]["remaining"]) == (1, 4)
            assert (limits["rpm"]["used"], limits["rpm"]["remaining"]) == (1, 1)
            response = await request
            assert response.status == 200
            response.release()
            for _ in range(50):  # the settle is at once; the ledger's row lands in ~1 s
                code, view, stderr = await asyncio.to_thread(usage, tmp_path, env)
                assert code == 0, stderr
                assert view is not None
                if view["budgets"][0]["used"] == 17:
                    break
                await asyncio.sleep(0.2)
            assert (view["budgets"][0]["used"], view["budgets"][0]["reserved"]) == (17, 0)
            assert {r["kind"]: r["used"] for r in view["limits"]}["concurrency"] == 0
            # elsewhere, or nothing listening there: the ledger's used, the rest unknown
            elsewhere = ("--server", f"http://127.0.0.1:{free_port()}")
            code, view, stderr = await asyncio.to_thread(usage, tmp_path, env, *elsewhere)
            assert code == 0 and "no server answered" in stderr
            assert view is not None
            assert (view["budgets"][0]["used"], view["budgets"][0]["reserved"]) == (17, None)
            assert {r["kind"]: r["used"] for r in view["limits"]}["concurrency"] is None


async def test_usage_with_redis_down_shows_the_ledgers_used_and_the_rest_unknown(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """GATEWAY_REDIS_URL set but nothing listening: exit 0 with the ledger's used, reserved
    and the rate limits unknown, and a note that the limits store could not be read (it
    was exit 1, "cannot read usage: BackendUnavailable")."""
    env = {
        "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/gateway.db",
        "GATEWAY_REDIS_URL": "",
        "GATEWAY_ACCESS_LOG": "off",
    }
    async with MockUpstream("up") as up:
        up.behave(Behaviour(prompt_tokens=7, completion_tokens=10))
        (tmp_path / "policies").mkdir()
        policy = BUDGET_POLICY.format(base=up.base_url, team="cli", budget=100_000) + LIMITS
        (tmp_path / "policies" / "bundle.yaml").write_text(policy)
        with ExitStack() as stack:
            server = await asyncio.to_thread(stack.enter_context, serve_process(tmp_path, env))
            env["GATEWAY_PORT"] = str(server.port)
            token = await replica_token(env["GATEWAY_DATABASE_URL"], server.port, "cli", "ann")
            async with http.post(
                f"{server.origin}/v1/chat/completions",
                json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
                headers={"authorization": f"Bearer {token}"},
            ) as response:
                assert response.status == 200
            for _ in range(50):  # the ledger's row lands in ~1 s
                code, view, stderr = await asyncio.to_thread(usage, tmp_path, env)
                assert code == 0 and view is not None, stderr
                if view["budgets"][0]["used"] == 17:
                    break
                await asyncio.sleep(0.2)
        # the server is gone, and Redis is set but down
        env["GATEWAY_REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
        code, view, stderr = await asyncio.to_thread(usage, tmp_path, env)
        text = await asyncio.to_thread(run_gateway, "usage", "cli", cwd=tmp_path, env=env)
    assert "used 17  reserved ?  remaining ?" in text.stdout, text.stdout
    assert code == 0, stderr
    assert "warning: the limits store could not be read" in stderr and "Traceback" not in stderr
    assert view is not None
    assert (view["budgets"][0]["used"], view["budgets"][0]["reserved"]) == (17, None)
    assert view["budgets"][0]["remaining"] is None  # reserved unknown: so is what is left
    assert {r["kind"]: r["used"] for r in view["limits"]} == {"rpm": None, "concurrency": None}


async def test_usage_asking_a_server_whose_redis_is_down_shows_the_ledgers_used(
    tmp_path: Path,
) -> None:
    """The server has Redis (down), this shell has no GATEWAY_REDIS_URL: the server answers
    503, and `usage` falls back to the ledger's used with a note, exit 0, as when it
    reads Redis itself (it was exit 1 with the server's 503)."""
    env = {
        "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/gateway.db",
        "GATEWAY_ACCESS_LOG": "off",
    }
    async with MockUpstream("up") as up:
        (tmp_path / "policies").mkdir()
        policy = BUDGET_POLICY.format(base=up.base_url, team="cli", budget=100_000) + LIMITS
        (tmp_path / "policies" / "bundle.yaml").write_text(policy)
        down = {**env, "GATEWAY_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
        with ExitStack() as stack:
            server = await asyncio.to_thread(stack.enter_context, serve_process(tmp_path, down))
            shell = {**env, "GATEWAY_REDIS_URL": "", "GATEWAY_PORT": str(server.port)}
            code, view, stderr = await asyncio.to_thread(usage, tmp_path, shell)
    assert code == 0, stderr
    assert "could not read its limits" in stderr and "Traceback" not in stderr
    assert view is not None
    assert (view["budgets"][0]["used"], view["budgets"][0]["reserved"]) == (0, None)
    assert {r["kind"]: r["used"] for r in view["limits"]} == {"rpm": None, "concurrency": None}


def _usage_in(home: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`gateway usage demo --json` in exactly `env` (not this process's environment)."""
    return subprocess.run(
        [GATEWAY, "usage", "demo", "--json"],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_usage_finds_the_server_where_the_last_serve_listened(tmp_path: Path) -> None:
    """`serve --port P --admin-port A` and a shell without GATEWAY_PORT: `gateway usage`
    asks the address the database recorded (the admin port), not 127.0.0.1:8080; a port
    this shell sets still comes first."""
    base = {k: v for k, v in os.environ.items() if k not in ("GATEWAY_PORT", "GATEWAY_ADMIN_PORT")}
    env = {**base, "GATEWAY_REDIS_URL": "", "GATEWAY_ACCESS_LOG": "off"}
    args = ("--admin-port", str(free_port()))
    with serve_process(tmp_path, args=args, base_env=env, port_as_flag=True) as served:
        shown = _usage_in(tmp_path, env)
        assert shown.returncode == 0, shown.stderr
        assert "no server answered" not in shown.stderr and "answered 404" not in shown.stderr
        assert json.loads(shown.stdout)["team"] == "demo"
        # The image's way: GATEWAY_PORT names that server's teams' port, whose /admin is
        # 404; its admin port, recorded, is asked.
        shown = _usage_in(tmp_path, {**env, "GATEWAY_PORT": str(served.port)})
        assert shown.returncode == 0, shown.stderr
        assert "answered 404" not in shown.stderr
        assert json.loads(shown.stdout)["team"] == "demo"
        elsewhere = free_port()
        shown = _usage_in(tmp_path, {**env, "GATEWAY_PORT": str(elsewhere)})
        assert shown.returncode == 0, shown.stderr
        assert f"no server answered at http://127.0.0.1:{elsewhere}" in shown.stderr
