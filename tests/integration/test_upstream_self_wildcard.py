"""A gateway listening on every address (`--host 0.0.0.0`, the container's setting) is
reached through each of this host's addresses: an `api_base` at any of them on the
gateway's port or admin port loops back into it, and is refused (SECURITY.md, SSRF)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import httpx2 as httpx
import pytest

from gateway.policy.compiled import ProviderConfig
from gateway.policy.upstreams import Listener, UpstreamRules, upstream_refusal
from gateway.providers.base import UpstreamCall, UpstreamFailure
from gateway.providers.openai_compat import OpenAICompatProvider
from tests.support.processes import free_port, run_gateway
from tests.support.resolver import MapResolver
from tests.support.serving import serve_process


def _own_non_loopback_address() -> str:
    """This host's address on its default route (a UDP connect sends nothing); skip if none."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.123", 9))  # TEST-NET-1: only the route is looked up
            address: str = probe.getsockname()[0]
    except OSError as error:
        pytest.skip(f"this machine has no IPv4 route off loopback: {error}")
    if ipaddress.ip_address(address).is_loopback:
        pytest.skip("this machine's only IPv4 address is a loopback one")
    return address


def _with_provider_at(bundle: dict[str, Any], api_base: str) -> dict[str, Any]:
    providers = {**bundle["providers"], "x": {"type": "openai-compatible", "api_base": api_base}}
    models = {**bundle["models"], "loop": {"deployments": [{"provider": "x", "model": "m"}]}}
    return {**bundle, "providers": providers, "models": models}


def test_admin_put_refuses_the_hosts_own_address_on_either_port(tmp_path):
    """`gateway serve --host 0.0.0.0 --admin-port A`: PUT /admin/policy with a provider at
    http://<host IP>:A/admin or :PORT/v1 is 400, the gateway's own listener; the same
    address on another port is an ordinary upstream. Both were accepted and called."""
    own = _own_non_loopback_address()
    admin_port = free_port()
    args = ("--host", "0.0.0.0", "--admin-port", str(admin_port))
    with serve_process(tmp_path, args=args) as server:
        done = run_gateway("token", "--team", "demo", "--scope", "gateway:admin", cwd=tmp_path)
        bearer = {"Authorization": f"Bearer {done.stdout.split()[-1]}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{admin_port}", headers=bearer) as http:
            running = http.get("/admin/policy").json()
            for port, path in ((admin_port, "/admin"), (server.port, "/v1")):
                looping = _with_provider_at(running["bundle"], f"http://{own}:{port}{path}")
                body = {"bundle": looping, "base_version": running["version"]}
                refused = http.put("/admin/policy", json=body)
                assert refused.status_code == 400, refused.text
                (error,) = refused.json()["error"]["errors"]
                assert error["field"] == "providers.x.api_base"
                assert f"{own}:{port} is the gateway's own listener" in error["message"]
            elsewhere = _with_provider_at(running["bundle"], f"http://{own}:{free_port()}/v1")
            body = {"bundle": elsewhere, "base_version": running["version"]}
            assert http.put("/admin/policy", json=body).status_code == 200
        assert "/admin/chat/completions" not in server.stderr()


async def test_a_name_resolving_to_the_hosts_own_address_is_never_connected_to():
    """`up.test` → this host's address, on a wildcard listener's port: refused when the
    connection is made, as a loop back into the gateway."""
    own = _own_non_loopback_address()
    port = free_port()
    rules = UpstreamRules(None, Listener("0.0.0.0", port))
    config = ProviderConfig(
        "up", "openai-compatible", api_base=f"http://up.test:{port}/v1", upstreams=rules
    )
    looping = OpenAICompatProvider(config, lookup=MapResolver({"up.test": [own]}))
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


def test_another_hosts_address_is_not_the_listener():
    """A wildcard listener is this host's addresses only: a TEST-NET address on its port
    is an ordinary upstream."""
    rules = UpstreamRules(None, Listener("0.0.0.0", 9000))
    assert upstream_refusal("http://198.51.100.7:9000/v1", rules) is None
    assert upstream_refusal("http://[2001:db8::7]:9000/v1", rules) is None
