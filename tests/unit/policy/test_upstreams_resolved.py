"""The connect-time decision: may the gateway connect to an address a host name resolved to?"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.policy.upstreams import (
    METADATA_NAMES,
    METADATA_NETWORKS,
    Listener,
    UpstreamRules,
    host_address,
    is_listener,
    parse_upstream_allow,
    resolved_refusal,
    upstream_refusal,
)

LISTENER = Listener("127.0.0.1", 8080)


def rules(allow: str | None = None, listener: Listener | None = LISTENER) -> UpstreamRules:
    return UpstreamRules(parse_upstream_allow(allow) if allow is not None else None, listener)


METADATA_ADDRESSES = [
    "169.254.169.254",
    "169.254.170.2",  # ECS task credentials
    "169.254.0.1",
    "fe80::1",
    "fe80::1%eth0",  # as getaddrinfo gives a scoped link-local address
    "fd00:ec2::254",
    "100.100.100.200",
    "::ffff:169.254.169.254",  # IPv4-mapped
    "64:ff9b::a9fe:a9fe",  # NAT64
    "2002:a9fe:a9fe::1",  # 6to4
    "::169.254.169.254",  # IPv4-compatible
]


@pytest.mark.parametrize("address", METADATA_ADDRESSES)
@pytest.mark.parametrize("name", ["vm", "169.254.169.254.nip.io", "api.example.com"])
def test_a_name_resolving_to_metadata_is_refused(name: str, address: str) -> None:
    """A name that passed the check as written still may not reach the metadata service."""
    reason = resolved_refusal(name, address, 80, rules())
    assert reason is not None
    assert "link-local or cloud metadata" in reason and f"{name} resolves to" in reason


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "10.0.0.7", "192.168.1.2", "127.0.0.1", "::1", "2606:4700::1111"]
)
def test_ordinary_addresses_are_accepted_without_an_allow_list(address: str) -> None:
    """Unset GATEWAY_UPSTREAM_ALLOW: loopback and private addresses are ordinary upstreams."""
    assert resolved_refusal("vllm", address, 8000, rules()) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"])
def test_a_name_resolving_to_the_own_listener_is_refused(address: str) -> None:
    """`vm` -> 127.0.0.1 on the gateway's own port would loop a request back into it."""
    reason = resolved_refusal("vm", address, 8080, rules())
    assert reason is not None and "the gateway's own listener" in reason


def test_the_same_address_on_another_port_is_an_ordinary_local_server() -> None:
    assert resolved_refusal("vm", "127.0.0.1", 8081, rules()) is None


def test_the_listener_check_can_be_left_out_for_fetches_that_are_not_upstream_calls() -> None:
    assert resolved_refusal("vm", "127.0.0.1", 8080, rules(), check_listener=False) is None
    assert resolved_refusal("vm", "169.254.169.254", 80, rules(), check_listener=False)


@pytest.mark.parametrize(
    ("listener", "address", "refused"),
    [
        (Listener("0.0.0.0", 8080), "127.0.0.1", True),  # a wildcard listener is every loopback
        (Listener("0.0.0.0", 8080), "::1", True),
        (Listener("::", 8080), "127.0.0.5", True),
        (Listener("10.0.0.5", 8080), "10.0.0.5", True),
        (Listener("10.0.0.5", 8080), "127.0.0.1", False),  # not listening there
        (Listener("10.0.0.5", 8080), "10.0.0.6", False),
    ],
)
def test_the_listener_as_configured(listener: Listener, address: str, refused: bool) -> None:
    reason = resolved_refusal("gw", address, 8080, rules(listener=listener))
    assert (reason is not None) is refused


def test_with_an_allow_list_an_unnamed_host_must_resolve_into_its_networks() -> None:
    allow = rules("10.0.0.0/8")
    assert resolved_refusal("vllm", "10.1.2.3", 8000, allow) is None
    reason = resolved_refusal("vllm", "192.168.1.2", 8000, allow)
    assert reason is not None and "not in GATEWAY_UPSTREAM_ALLOW" in reason


@pytest.mark.parametrize("allow", ["api.example.com", "*.example.com"])
def test_a_host_allowed_by_name_may_resolve_to_any_ordinary_address(allow: str) -> None:
    assert resolved_refusal("api.example.com", "203.0.113.9", 443, rules(allow)) is None
    assert resolved_refusal("api.example.com", "10.0.0.1", 443, rules(allow)) is None


def test_a_broad_allow_list_does_not_open_metadata_or_the_own_port() -> None:
    """`0.0.0.0/0` or `*.example.com` permit ordinary hosts, not these two."""
    broad = rules("0.0.0.0/0, ::/0, *.example.com")
    assert resolved_refusal("api.example.com", "169.254.169.254", 80, broad) is not None
    assert resolved_refusal("api.example.com", "127.0.0.1", 8080, broad) is not None
    assert resolved_refusal("api.example.com", "203.0.113.9", 80, broad) is None


@pytest.mark.parametrize(
    "allow", ["169.254.169.254", "169.254.169.254/32", "169.254.0.0/16", "imds.internal"]
)
def test_an_explicit_entry_opens_the_metadata_address(allow: str) -> None:
    assert resolved_refusal("imds.internal", "169.254.169.254", 80, rules(allow)) is None


@pytest.mark.parametrize("allow", ["127.0.0.1", "gw.internal", "127.0.0.0/8"])
def test_no_entry_opens_the_own_listener(allow: str) -> None:
    assert resolved_refusal("gw.internal", "127.0.0.1", 8080, rules(allow)) is not None
    assert resolved_refusal("gw.internal", "127.0.0.1", 8000, rules(allow)) is None


def test_names_compare_without_case_or_a_final_dot() -> None:
    allow = rules("api.example.com")
    assert resolved_refusal("API.Example.COM.", "203.0.113.9", 443, allow) is None


def test_an_answer_that_is_not_an_address_is_refused() -> None:
    reason = resolved_refusal("vllm", "not-an-address", 80, rules())
    assert reason is not None and "not an IP address" in reason


# --- properties ------------------------------------------------------------------

ipv4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
ipv6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
addresses = st.one_of(ipv4, ipv6)
ports = st.integers(1, 65535)
names = st.from_regex(r"\A[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}\Z")
allow_lists = st.sampled_from(
    [None, "10.0.0.0/8", "0.0.0.0/0", "api.example.com", "*.internal", "127.0.0.1", "::/0"]
)
listeners = st.sampled_from(
    [None, LISTENER, Listener("0.0.0.0", 8080), Listener("10.0.0.5", 443), Listener("::", 80)]
)


def _url(address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    host = f"[{address}]" if address.version == 6 else str(address)
    return f"http://{host}:{port}/v1"


@given(address=addresses, port=ports, allow=allow_lists, listener=listeners)
def test_an_address_is_judged_as_it_would_be_when_written_in_api_base(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    port: int,
    allow: str | None,
    listener: Listener | None,
) -> None:
    """One decision: a name resolving to A is refused exactly when `http://A/` would be
    (a name with no allow-list entry of its own)."""
    rule = rules(allow, listener)
    written = upstream_refusal(_url(address, port), rule)
    resolved = resolved_refusal("unlisted.example.org", str(address), port, rule)
    assert (written is None) is (resolved is None)


@given(
    low=st.integers(0, 2**16 - 1),
    name=names,
    port=ports,
    allow=st.sampled_from([None, "0.0.0.0/0", "10.0.0.0/8", "*.example.com"]),
)
def test_link_local_ipv4_is_refused_for_any_name_without_an_explicit_entry(
    low: int, name: str, port: int, allow: str | None
) -> None:
    address = ipaddress.IPv4Address(int(ipaddress.IPv4Address("169.254.0.0")) + low)
    for form in (
        str(address),
        f"::ffff:{address}",
        str(ipaddress.IPv6Address(f"64:ff9b::{address}")),
    ):
        assert resolved_refusal(name, form, port, rules(allow)) is not None


@given(address=addresses, name=names, port=ports, listener=listeners)
def test_an_exact_entry_for_the_address_always_opens_it(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    name: str,
    port: int,
    listener: Listener | None,
) -> None:
    """Whatever the address (metadata too), naming it alone in the allow-list opens it
    (an IPv6 form embedding an IPv4 address is that IPv4 address), but on the
    gateway's own listener."""
    entry = host_address(str(address))
    assert entry is not None
    allow = rules(str(entry), listener)
    own = listener is not None and is_listener(name, entry, port, listener)
    assert (resolved_refusal(name, str(address), port, allow) is None) is not own


@given(address=addresses, name=names.filter(lambda n: n not in METADATA_NAMES), port=ports)
def test_without_a_listener_or_allow_list_only_metadata_is_refused(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, name: str, port: int
) -> None:
    seen = host_address(str(address))
    is_metadata = any(seen in network for network in METADATA_NETWORKS)
    assert (resolved_refusal(name, str(address), port, rules(None, None)) is not None) is (
        is_metadata
    )
