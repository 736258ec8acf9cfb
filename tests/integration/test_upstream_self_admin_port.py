"""The admin listener is one of the gateway's own: a provider's `api_base` at `--admin-port`
is refused as a loop back into the gateway, like one at `--port`, at the admin API and at
connect time."""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
import pytest

from gateway.policy.compiled import ProviderConfig
from gateway.policy.upstreams import Listener, UpstreamRules
from gateway.providers.base import UpstreamCall, UpstreamFailure
from gateway.providers.openai_compat import OpenAICompatProvider
from tests.support.processes import free_port, run_gateway
from tests.support.resolver import MapResolver
from tests.support.serving import serve_process
from tests.support.upstream import MockUpstream


def _with_provider_at(bundle: dict[str, Any], api_base: str) -> dict[str, Any]:
    providers = {**bundle["providers"], "x": {"type": "openai-compatible", "api_base": api_base}}
    models = {**bundle["models"], "loop": {"deployments": [{"provider": "x", "model": "m"}]}}
    return {**bundle, "providers": providers, "models": models}


def test_admin_put_refuses_an_api_base_at_the_admin_port(tmp_path):
    """PUT /admin/policy with a provider at 127.0.0.1:ADMIN_PORT: 400 naming the field as the
    gateway's own listener; another local port is an ordinary upstream and is accepted."""
    admin_port = free_port()
    with serve_process(tmp_path, args=("--admin-port", str(admin_port))) as server:
        done = run_gateway("token", "--team", "demo", "--scope", "gateway:admin", cwd=tmp_path)
        bearer = {"Authorization": f"Bearer {done.stdout.split()[-1]}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{admin_port}", headers=bearer) as http:
            running = http.get("/admin/policy").json()
            looping = _with_provider_at(running["bundle"], f"http://127.0.0.1:{admin_port}/admin")
            body = {"bundle": looping, "base_version": running["version"]}
            refused = http.put("/admin/policy", json=body)
            assert refused.status_code == 400, refused.text
            (error,) = refused.json()["error"]["errors"]
            assert error["field"] == "providers.x.api_base"
            assert f"127.0.0.1:{admin_port} is the gateway's own listener" in error["message"]
            elsewhere = _with_provider_at(running["bundle"], f"http://127.0.0.1:{free_port()}/v1")
            body = {"bundle": elsewhere, "base_version": running["version"]}
            assert http.put("/admin/policy", json=body).status_code == 200
        assert "/admin/chat/completions" not in server.stderr()


async def test_a_name_resolving_to_the_admin_port_is_never_connected_to():
    """`up.test` → 127.0.0.1 on the admin listener's port: refused at connect, no request."""
    async with MockUpstream() as up:
        rules = UpstreamRules(None, Listener("127.0.0.1", free_port(), admin_port=up.port))
        config = ProviderConfig(
            "up", "openai-compatible", api_base=f"http://up.test:{up.port}/v1", upstreams=rules
        )
        looping = OpenAICompatProvider(config, lookup=MapResolver({"up.test": ["127.0.0.1"]}))
        call = UpstreamCall(
            endpoint="chat",
            body={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            model="m",
            is_stream=False,
            request_id="req-1",
        )
        try:
            with pytest.raises(UpstreamFailure, match="the gateway's own listener"):
                await looping.send(call)
        finally:
            await looping.close()
        assert up.requests == []


def test_the_admin_port_setting_is_one_of_the_listeners():
    """GATEWAY_ADMIN_PORT joins GATEWAY_PORT in the rules; unset or 0 adds nothing."""
    env = {"GATEWAY_PORT": "9000", "GATEWAY_ADMIN_PORT": "9001"}
    assert UpstreamRules.from_env(env).listener == Listener("127.0.0.1", 9000, 9001)
    for unset in ({"GATEWAY_PORT": "9000"}, {"GATEWAY_PORT": "9000", "GATEWAY_ADMIN_PORT": "0"}):
        assert UpstreamRules.from_env(unset).listener == Listener("127.0.0.1", 9000)
