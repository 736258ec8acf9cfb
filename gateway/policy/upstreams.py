"""Where a provider's `api_base` may point: the operator's allow-list and the hosts never meant.

Owns `GATEWAY_UPSTREAM_ALLOW` (comma-separated host names, `*.suffix` names,
IP addresses or CIDRs; unset = any host, loopback and private included) and the
hosts refused even then: link-local and cloud metadata addresses (169.254.0.0/16,
fe80::/10, AWS's fd00:ec2::/64, GCP's fd20:ce::254, Oracle's, Scaleway's, Alibaba's
100.100.100.200, Azure's WireServer 168.63.129.16, names such as
metadata.google.internal) unless the allow-list names them explicitly, and the
gateway's own listeners (its host on its port and on its admin port; for a
wildcard host, any of this host's addresses), which would loop a request back
into the gateway, always. Pure but for one question to the OS, whether an address on a
listener's port is this host's (`is_own_address`): at check time names are
compared as written, never resolved (a check-time lookup would say nothing
about request time); the same rules are applied again to the addresses a name
resolves to when a connection is made (`resolved_refusal`, called by
`providers/resolver.py`), so a name pointing at
169.254.169.254 or at this gateway, or rebound there later, is refused then.

A host is checked as the HTTP client will connect to it: yarl (under aiohttp)
folds look-alikes (`169。254。169。254`, full-width digits and letters) into
ASCII through IDNA, so a host not written in ASCII is refused outright, and the
host yarl derives is checked as well as the one written. An IPv6 address that
embeds an IPv4 one (IPv4-mapped or -compatible, NAT64 `64:ff9b::/96`, 6to4
`2002::/16`) counts as that IPv4 address.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from yarl import URL

UPSTREAM_ALLOW_VAR = "GATEWAY_UPSTREAM_ALLOW"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_NETWORKS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),  # IPv4 link-local: AWS, GCP, Azure, OCI metadata
    ipaddress.ip_network("fe80::/10"),  # IPv6 link-local
    # AWS's own services over IPv6: metadata (::254), EKS Pod Identity (::23), DNS (::253)
    ipaddress.ip_network("fd00:ec2::/64"),
    ipaddress.ip_network("fd20:ce::254/128"),  # GCP metadata over IPv6
    ipaddress.ip_network("fd00:c1::a9fe:a9fe/128"),  # Oracle Cloud metadata over IPv6
    ipaddress.ip_network("fd00:42::42/128"),  # Scaleway metadata over IPv6
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
    ipaddress.ip_network("192.0.0.192/32"),  # Oracle Cloud Classic metadata
    ipaddress.ip_network("168.63.129.16/32"),  # Azure's WireServer (the host's agent channel)
)
METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
        "api.metadata.cloud.ibm.com",
    }
)
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")
_LEGACY_IPV4 = re.compile(r"^[0-9a-fx.]+$")  # 2852039166, 0xa9.0xfe.0xa9.0xfe, 0251.0376.…
DEFAULT_PORTS = {"http": 80, "https": 443}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix: last 32 bits
# RFC 8215's local-use prefix: an operator's translator may carry the IPv4 address in any
# of RFC 6052's placements (prefix /32 … /96) inside it, so each is checked.
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
# RFC 6052 §2.2: for each prefix length, the bit offsets of the IPv4 address's four
# octets in the 128-bit address (bits 64-71, the "u" octet, are always skipped).
_NAT64_OCTETS = {
    32: (32, 40, 48, 56),
    40: (40, 48, 56, 72),
    48: (48, 56, 72, 80),
    56: (56, 72, 80, 88),
    64: (72, 80, 88, 96),
    96: (96, 104, 112, 120),
}
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d (:: and ::1 excluded)
# Why a host, or an address a name resolved to, is refused.
Blocked = Literal["metadata", "listener", "outside"]


@dataclass(frozen=True, slots=True)
class UpstreamAllow:
    """The parsed `GATEWAY_UPSTREAM_ALLOW`: exact names, `*.suffix` names, networks."""

    names: frozenset[str]
    suffixes: tuple[str, ...]  # ".example.com" for "*.example.com"
    networks: tuple[IPNetwork, ...]

    def permits(self, name: str, address: IPAddress | None) -> bool:
        if name in self.names or any(name.endswith(s) for s in self.suffixes):
            return True
        return address is not None and any(address in net for net in self.networks)

    def names_explicitly(
        self, name: str, address: IPAddress | None, within: IPNetwork | None
    ) -> bool:
        """True when an entry is this very host, or a network no broader than `within`.

        `0.0.0.0/0` or `*.internal` permit ordinary hosts but do not open the
        metadata service or the gateway's own port: those need their own entry.
        """
        if name in self.names:
            return True
        if address is None:
            return False
        for net in self.networks:
            if address not in net:
                continue
            if net.num_addresses == 1:
                return True
            if within is not None and net.version == within.version and net.subnet_of(within):  # type: ignore[arg-type]  # same version checked just before
                return True
        return False


@dataclass(frozen=True, slots=True)
class Listener:
    """The gateway's own host and ports (`GATEWAY_HOST`, `GATEWAY_PORT`, `GATEWAY_ADMIN_PORT`).

    The admin listener counts too: a provider there would have the gateway call its own
    admin plane from inside, round the network rule that guards that port.
    """

    host: str
    port: int
    admin_port: int | None = None


@dataclass(frozen=True, slots=True)
class UpstreamRules:
    allow: UpstreamAllow | None  # None: any host but the refused ones
    listener: Listener | None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> UpstreamRules:
        """The rules of this environment; ValueError naming the variable when it is unusable."""
        raw = env.get(UPSTREAM_ALLOW_VAR, "").strip()  # empty is unset, as GATEWAY_REDIS_URL
        try:
            allow = parse_upstream_allow(raw) if raw else None
        except ValueError as error:
            raise ValueError(f"{UPSTREAM_ALLOW_VAR}: {error}") from None
        return cls(allow, listener_from_env(env))


# No allow-list and no listener known: anywhere but metadata and link-local addresses.
DEFAULT_RULES = UpstreamRules(allow=None, listener=None)


def parse_upstream_allow(text: str) -> UpstreamAllow:
    """Parse the comma-separated allow-list; ValueError naming the first bad entry."""
    names: set[str] = set()
    suffixes: list[str] = []
    networks: list[IPNetwork] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        lowered = entry.lower().rstrip(".")
        try:
            networks.append(ipaddress.ip_network(lowered.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        if lowered.startswith("*.") and _HOST_NAME.match(lowered[2:]):
            suffixes.append(lowered[1:])
        elif _HOST_NAME.match(lowered) and not _LEGACY_IPV4.match(lowered):
            names.add(lowered)
        else:
            raise ValueError(
                f"{entry!r} is not a host name, *.domain, IP address or CIDR "
                "(no scheme, port or path)"
            )
    return UpstreamAllow(frozenset(names), tuple(suffixes), tuple(networks))


def listener_from_env(env: Mapping[str, str]) -> Listener | None:
    """Where `gateway serve` listens (its defaults when unset); None for port 0 or garbage."""
    port = _listening_port(env.get("GATEWAY_PORT", "8080"))
    if port is None:
        return None
    admin_port = _listening_port(env.get("GATEWAY_ADMIN_PORT", "0"))
    host = env.get("GATEWAY_HOST", "127.0.0.1").strip().lower().strip("[]")
    return Listener(host, port, admin_port)


def _listening_port(text: str) -> int | None:
    """A port setting's value; None for unset (0) or garbage, which the settings check reports."""
    try:
        port = int(text.strip() or "0")
    except ValueError:
        return None
    return port if 0 < port < 65536 else None


def host_address(host: str) -> IPAddress | None:
    """The IP address a host string stands for, in any form a resolver accepts; else None.

    Besides the usual notations, C's inet_aton reads `2852039166`, `0xa9fea9fe`
    and `0251.0376.0251.0376` as 169.254.169.254, and getaddrinfo uses it; an
    IPv6 address embedding an IPv4 address counts as that IPv4 address.
    """
    try:
        address: IPAddress = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        if not _LEGACY_IPV4.match(host):
            return None
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address):
        return embedded_ipv4(address) or address
    return address


def nat64_candidates(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an address in the NAT64 local-use prefix may stand for: one per
    RFC 6052 placement (which one a translator uses is its own configuration)."""
    if address not in _NAT64_LOCAL:
        return ()
    bits = int(address)
    return tuple(
        ipaddress.IPv4Address(
            sum(((bits >> (120 - offset)) & 0xFF) << (24 - 8 * i) for i, offset in enumerate(at))
        )
        for at in _NAT64_OCTETS.values()
    )


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, compatible, NAT64, 6to4), else None.

    Each reaches that IPv4 host through a translator or a stack that accepts
    the form, so the metadata and loopback checks must see the IPv4 address. In the
    NAT64 local-use prefix, the first placement that is a metadata or loopback
    address wins (else the /96 one): every placement is a host it may reach.
    """
    local = nat64_candidates(address)
    if local:
        risky = (a for a in local if _metadata_network(a) is not None or a.is_loopback)
        return next(risky, local[-1])
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _metadata_network(address: IPAddress | None) -> IPNetwork | None:
    if address is None:
        return None
    return next((net for net in METADATA_NETWORKS if address in net), None)


def _is_loopback(name: str, address: IPAddress | None) -> bool:
    return name in LOOPBACK_NAMES or (
        address is not None and (address.is_loopback or address.is_unspecified)
    )


def is_own_address(address: IPAddress) -> bool:
    """Whether `address` is one of this host's: a socket can bind to it (nothing is sent).

    A wildcard listener answers on every one of them, not only on loopback.
    """
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(address), 0))
    except OSError:
        return False
    return True


def is_listener(name: str, address: IPAddress | None, port: int, listener: Listener) -> bool:
    """Whether host:port is one of the gateway's own listeners, the teams' or the admin one
    (both on the same host; a wildcard listener is every address of this host)."""
    if port != listener.port and port != listener.admin_port:
        return False
    listening = host_address(listener.host)
    if listener.host in _WILDCARD_HOSTS or (listening is not None and listening.is_unspecified):
        # Asked only on a listener's port, so the bind stays off every other upstream.
        return _is_loopback(name, address) or (address is not None and is_own_address(address))
    if _is_loopback(listener.host, listening):
        return _is_loopback(name, address)
    return name == listener.host or (address is not None and address == listening)


def upstream_refusal(
    url: str, rules: UpstreamRules, *, field: str = "api_base", check_listener: bool = True
) -> str | None:
    """Why `url` may not be fetched as `field` under `rules`, or None when it may.

    The listener check (a loop back into this gateway) is for upstreams; `field`
    names the setting in each message.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"{field} is not a valid URL"
    written = (parts.hostname or "").rstrip(".")
    if parts.scheme not in DEFAULT_PORTS or not written:
        return f"{field} must be an http(s) URL with a host"
    if not written.isascii():
        # The HTTP client folds such a host into ASCII (IDNA/NFKC): full-width digits or
        # ideographic full stops would connect to 169.254.169.254 behind the checks' back.
        return (
            f"the host of {field} must be written in ASCII (an international domain name "
            "in its xn-- form); non-ASCII look-alikes are refused"
        )
    try:
        connected = (URL(url).raw_host or "").rstrip(".").lower()
    except (ValueError, UnicodeError):
        return f"{field} is not a valid URL"
    port = port if port is not None else DEFAULT_PORTS[parts.scheme]
    for host in dict.fromkeys((written, connected)):  # the host as written, and as connected
        problem = _host_refusal(host, port, rules, check_listener=check_listener)
        if problem is not None:
            return problem
    return None


def blocked_as(
    name: str, address: IPAddress | None, port: int, rules: UpstreamRules, *, check_listener: bool
) -> Blocked | None:
    """The one decision, for a host as written (`address` None for a name) or for an
    address a name resolved to: a metadata or link-local address, the gateway's own
    listener, or outside the allow-list; None when it may be connected to.

    A metadata address needs an allow-list entry naming this very host or a network no
    broader than the blocked one; the own listener is refused whatever the list says;
    with an allow-list, a host permitted by name may resolve anywhere else, an unnamed
    one only into its networks.
    """
    allow = rules.allow
    metadata = _metadata_network(address)
    if metadata is not None or name in METADATA_NAMES:
        if allow is not None and allow.names_explicitly(name, address, metadata):
            return None
        return "metadata"
    if (
        check_listener
        and rules.listener is not None
        and is_listener(name, address, port, rules.listener)
    ):
        # No entry opens it: the allow-list has no ports, and `127.0.0.1` written for a
        # model server beside the gateway must not let a policy loop the gateway into itself.
        return "listener"
    if allow is not None and not allow.permits(name, address):
        return "outside"
    return None


def resolved_refusal(
    name: str, resolved: str, port: int, rules: UpstreamRules, *, check_listener: bool = True
) -> str | None:
    """Why a connection to `resolved` (an address DNS gave for host `name`) on `port` is
    refused under `rules`, or None. Pure: the lookup is the caller's."""
    name = name.rstrip(".").lower()
    address = host_address(resolved)
    if address is None:
        return f"{name} resolved to {resolved!r}, which is not an IP address"
    blocked = blocked_as(name, address, port, rules, check_listener=check_listener)
    if blocked == "metadata":
        return (
            f"{name} resolves to {address}, a link-local or cloud metadata address; refused "
            f"unless {UPSTREAM_ALLOW_VAR} names it explicitly"
        )
    if blocked == "listener":
        return (
            f"{name} resolves to {address}:{port}, the gateway's own listener (a request would "
            "loop back into it); refused"
        )
    if blocked == "outside":
        return f"{name} resolves to {address}, which is not in {UPSTREAM_ALLOW_VAR}"
    return None


def _host_refusal(
    host: str, port: int, rules: UpstreamRules, *, check_listener: bool
) -> str | None:
    if not host:
        return "the URL has no host"
    blocked = blocked_as(host, host_address(host), port, rules, check_listener=check_listener)
    if blocked == "metadata":
        return (
            f"host {host} is a link-local or cloud metadata address; it is refused unless "
            f"{UPSTREAM_ALLOW_VAR} names it explicitly"
        )
    if blocked == "listener":
        return (
            f"{host}:{port} is the gateway's own listener (a request would loop back into it); "
            "refused"
        )
    if blocked == "outside":
        return f"host {host} is not in {UPSTREAM_ALLOW_VAR}"
    return None
