"""Upstream rules at connect time: a host name that resolves to a metadata address or to the
gateway's own listener is refused when the connection is made, whatever the name looked
like at `policy check`; the refusal is an ordinary failed attempt (502, failover)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx2 as httpx
import orjson
import pytest

from gateway.auth.jwks import JwksCache, KeySource, KeysUnavailable
from gateway.policy.compiled import ProviderConfig
from gateway.policy.upstreams import Listener, UpstreamRules
from gateway.providers.base import UpstreamCall, UpstreamFailure
from gateway.providers.openai_compat import OpenAICompatProvider
from tests.support.idp import FakeIdP
from tests.support.processes import run_gateway
from tests.support.resolver import MapResolver
from tests.support.serving import serve_process
from tests.support.upstream import MockUpstream

CALL = UpstreamCall(
    endpoint="chat",
    body={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    model="gpt-4o-mini",
    is_stream=False,
    request_id="req-1",
)


def provider(base: str, rules: UpstreamRules, lookup: MapResolver) -> OpenAICompatProvider:
    config = ProviderConfig("up", "openai-compatible", api_base=base, upstreams=rules)
    return OpenAICompatProvider(config, lookup=lookup)


async def test_a_name_resolving_to_the_listener_is_never_connected_to() -> None:
    """`up.test` → 127.0.0.1 on the listener's port: UpstreamFailure with the reason and
    not one request at that port."""
    async with MockUpstream() as up:
        rules = UpstreamRules(None, Listener("127.0.0.1", up.port))  # as if up were us
        looping = provider(
            f"http://up.test:{up.port}/v1", rules, MapResolver({"up.test": ["127.0.0.1"]})
        )
        try:
            with pytest.raises(UpstreamFailure) as failed:
                await looping.send(CALL)
        finally:
            await looping.close()
        assert failed.value.detail == (
            f"up: not connected: up.test resolves to 127.0.0.1:{up.port}, the gateway's own "
            "listener (a request would loop back into it); refused"
        )
        assert up.requests == []


async def test_a_name_resolving_to_metadata_fails_at_once() -> None:
    """No connection is tried: the failure comes before any connect timeout could."""
    imds = provider(
        "http://169.254.169.254.nip.io/latest",
        UpstreamRules(None, None),
        MapResolver({"169.254.169.254.nip.io": ["169.254.169.254"]}),
    )
    started = time.monotonic()
    try:
        with pytest.raises(UpstreamFailure, match="a link-local or cloud metadata address"):
            await imds.send(CALL)
    finally:
        await imds.close()
    assert time.monotonic() - started < 1


async def test_an_allowed_address_connects_and_is_looked_up_once_per_cache_entry() -> None:
    """The check costs one lookup per DNS cache entry, not one per request."""
    async with MockUpstream() as up:
        lookup = MapResolver({"up.test": ["169.254.169.254", "127.0.0.1"]})  # one is dropped
        ordinary = provider(f"http://up.test:{up.port}/v1", UpstreamRules(None, None), lookup)
        try:
            for _ in range(5):
                await ordinary.send(CALL)
        finally:
            await ordinary.close()
        assert len(up.requests) == 5
        assert lookup.calls == 1


async def test_an_issuers_keys_are_not_fetched_from_a_name_resolving_to_metadata(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """jwks_uri `idp.test` → 169.254.169.254: refused with the reason in the log, no request."""
    async with FakeIdP() as idp:
        jwks = JwksCache(timeout_s=30, lookup=MapResolver({"idp.test": ["169.254.169.254"]}))
        source = KeySource("http://idp.test", jwks_uri=f"http://idp.test:{idp.port}/jwks")
        started = time.monotonic()
        try:
            with pytest.raises(KeysUnavailable):
                await jwks.keys(source)
        finally:
            await jwks.close()
        assert time.monotonic() - started < 1
        assert idp.jwks_requests == 0
        assert "idp.test resolves to 169.254.169.254, a link-local or cloud metadata" in (
            caplog.text
        )


async def test_an_issuers_keys_come_from_the_addresses_that_are_allowed() -> None:
    async with FakeIdP() as idp:
        lookup = MapResolver({"idp.test": ["169.254.169.254", "127.0.0.1"]})
        jwks = JwksCache(lookup=lookup)
        source = KeySource("http://idp.test", jwks_uri=f"http://idp.test:{idp.port}/jwks")
        try:
            assert await jwks.keys(source)
        finally:
            await jwks.close()
        assert idp.jwks_requests == 1


# --- a real gateway, and a name the system resolves to 127.0.0.1 ------------------------


def loopback_name() -> str:
    """A host name this machine resolves to a loopback address that the policy check cannot
    tell from any other name (its own host name, usually in /etc/hosts)."""
    name = socket.gethostname().lower()
    try:
        infos = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
    except OSError:
        pytest.skip(f"this machine's host name {name!r} does not resolve")
    if not infos or not all(info[4][0].startswith("127.") for info in infos):
        pytest.skip(f"this machine's host name {name!r} does not resolve to 127.0.0.1 only")
    return name


def test_a_provider_resolving_to_the_gateways_own_port_is_refused_at_connect(
    tmp_path: Path,
) -> None:
    """`http://<hostname>:PORT/v1` passes the admin API (a name as written), but each call
    is refused at connect time: 502 upstream_unavailable alone, the mock answers when it
    is the fallback, and the gateway never receives its own request."""
    name = loopback_name()
    secret = {"LOOP_API_KEY": "sk-loop-secret"}
    with serve_process(tmp_path, secret, port_as_flag=True) as server:
        done = run_gateway(
            "token",
            *("--team", "demo", "--scope", "gateway:admin", "--scope", "gateway:invoke"),
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        bearer = {"authorization": f"Bearer {done.stdout.split()[-1]}"}
        with httpx.Client(timeout=30) as http:
            running = http.get(f"{server.origin}/admin/policy", headers=bearer).json()
            bundle = running["bundle"]
            bundle["providers"]["loop"] = {
                "type": "openai-compatible",
                "api_base": f"http://{name}:{server.port}/v1",
                "api_key": "${LOOP_API_KEY}",
            }
            bundle["models"]["loop-only"] = {"deployments": [{"provider": "loop", "model": "x"}]}
            bundle["models"]["loop-first"] = {
                "deployments": [
                    {"provider": "loop", "model": "x", "priority": 1},
                    {"provider": "demo", "model": "mock-chat", "priority": 2},
                ]
            }
            bundle["teams"]["demo"] = {"models": ["*"]}
            put = http.put(
                f"{server.origin}/admin/policy",
                headers=bearer,
                json={"bundle": bundle, "reason": "probe", "base_version": running["version"]},
            )
            assert put.status_code == 200, put.text

            chat = {"messages": [{"role": "user", "content": "hi"}]}
            alone = http.post(
                f"{server.origin}/v1/chat/completions",
                headers=bearer,
                json={**chat, "model": "loop-only"},
            )
            assert alone.status_code == 502, alone.text
            assert alone.json()["error"]["code"] == "upstream_unavailable"
            assert name not in alone.text  # the caller learns nothing of the upstream

            fallback = http.post(
                f"{server.origin}/v1/chat/completions",
                headers=bearer,
                json={**chat, "model": "loop-first"},
            )
            assert fallback.status_code == 200, fallback.text
            assert fallback.headers["x-gateway-deployment"] == "demo/mock-chat"
    log = server.stderr()  # complete once the process has stopped
    assert f"{name} resolves to 127.0.0.1:{server.port}, the gateway's own listener" in log
    # The client's four requests and nothing else: a call looped back would be a fifth.
    access = [
        line for line in map(orjson.loads, log.splitlines()) if line["logger"] == "gateway.access"
    ]
    assert [(a.get("model"), a["status"]) for a in access] == [
        (None, 200),
        (None, 200),
        ("loop-only", 502),
        ("loop-first", 200),
    ]
    assert [a["attempts"] for a in access[2:]] == [3, 2]  # retries stayed failed attempts
    assert "sk-loop-secret" not in log
