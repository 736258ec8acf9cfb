"""The resolver every upstream session uses: refused addresses never reach a connection."""

from __future__ import annotations

import pytest

from gateway.policy.upstreams import Listener, UpstreamRules, parse_upstream_allow
from gateway.providers.resolver import GuardedResolver, UpstreamRefused
from tests.support.resolver import MapResolver

RULES = UpstreamRules(None, Listener("127.0.0.1", 8080))


async def test_a_name_resolving_only_to_metadata_fails_with_the_reason() -> None:
    """169.254.169.254.nip.io: no address is left, so no connection is attempted."""
    lookup = MapResolver({"169.254.169.254.nip.io": ["169.254.169.254"]})
    with pytest.raises(UpstreamRefused) as refused:
        await GuardedResolver(RULES, lookup=lookup).resolve("169.254.169.254.nip.io", 80)
    assert "resolves to 169.254.169.254, a link-local or cloud metadata address" in str(
        refused.value
    )
    assert isinstance(refused.value, OSError)  # aiohttp wraps it as ClientConnectorError


async def test_a_name_resolving_to_the_own_port_fails_and_another_port_connects() -> None:
    lookup = MapResolver({"vm": ["127.0.0.1"]})
    guarded = GuardedResolver(RULES, lookup=lookup)
    with pytest.raises(UpstreamRefused, match="the gateway's own listener"):
        await guarded.resolve("vm", 8080)
    assert [r["host"] for r in await guarded.resolve("vm", 9000)] == ["127.0.0.1"]


async def test_refused_addresses_are_dropped_and_the_rest_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A rebinding answer mixing a public and a metadata address keeps only the public one."""
    lookup = MapResolver({"mixed.example": ["203.0.113.9", "169.254.169.254", "fe80::1"]})
    kept = await GuardedResolver(RULES, lookup=lookup).resolve("mixed.example", 443)
    assert [r["host"] for r in kept] == ["203.0.113.9"]
    assert "169.254.169.254" in caplog.text and "fe80::1" in caplog.text


async def test_the_allow_list_bounds_what_an_unnamed_host_resolves_to() -> None:
    rules = UpstreamRules(parse_upstream_allow("api.example.com, 10.0.0.0/8"), None)
    lookup = MapResolver({"api.example.com": ["203.0.113.9"], "vllm": ["10.0.0.7", "192.0.2.1"]})
    guarded = GuardedResolver(rules, lookup=lookup)
    assert len(await guarded.resolve("api.example.com", 443)) == 1  # allowed by its name
    assert [r["host"] for r in await guarded.resolve("vllm", 8000)] == ["10.0.0.7"]


async def test_the_listener_check_is_off_for_key_fetches() -> None:
    lookup = MapResolver({"idp": ["127.0.0.1"]})
    guarded = GuardedResolver(RULES, check_listener=False, lookup=lookup)
    assert len(await guarded.resolve("idp", 8080)) == 1


async def test_lookup_failures_pass_through_unchanged() -> None:
    with pytest.raises(OSError, match="no such name") as failed:
        await GuardedResolver(RULES, lookup=MapResolver({})).resolve("nowhere", 80)
    assert not isinstance(failed.value, UpstreamRefused)


async def test_a_lookup_handed_in_is_the_callers_to_close() -> None:
    lookup = MapResolver({})
    await GuardedResolver(RULES, lookup=lookup).close()
    assert not lookup.closed
