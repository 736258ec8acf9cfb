"""Name lookups for every outbound connection, under the upstream rules.

Owns the connect-time half of `policy/upstreams.py`: the policy check compares
host names as written, so a name that resolves to 169.254.169.254 or to this
gateway's own listener (an /etc/hosts entry, a wildcard DNS service, a record
rebound after the check) passes it. `GuardedResolver` wraps aiohttp's resolver
and drops each address `resolved_refusal` refuses; when none is left the lookup
fails with `UpstreamRefused`, an OSError, which aiohttp raises as a
`ClientConnectorError` and each client translates as any unreachable upstream
(502 `upstream_unavailable`, failover). No connection is attempted to a refused
address.

It runs once per DNS cache entry (`ttl_dns_cache`), not per request: the hot path
reuses pooled connections and cached, already-filtered addresses. IP literals
never reach a resolver (aiohttp connects to them directly): the policy check
judges a configured one exactly, and `guarded_trace` judges every one a session
is handed (a URL a library built, a redirect's target) before it connects, and
refuses any redirect aiohttp would follow. Must not: log or raise a URL's path or
query (a `${VAR}` may stand there, a redirect's Location a token), only host,
port and addresses.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from types import SimpleNamespace

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from gateway.policy.upstreams import UpstreamRules, resolved_refusal, upstream_refusal

log = logging.getLogger(__name__)


class UpstreamRefused(OSError):
    """Every address a host name resolved to is refused by the upstream rules."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"refused by the upstream rules: {reason}")
        self.reason = reason


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver (or `lookup`), less the addresses the upstream rules refuse.

    `check_listener=False` for fetches that are not upstream calls (an issuer's
    keys), as at check time. `lookup` is made on first use when not given (the
    default one needs the running loop); one not given is also closed here.
    """

    def __init__(
        self,
        rules: UpstreamRules,
        *,
        check_listener: bool = True,
        lookup: AbstractResolver | None = None,
    ) -> None:
        self._rules = rules
        self._check_listener = check_listener
        self._lookup = lookup
        self._owns_lookup = lookup is None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._lookup is None:
            self._lookup = aiohttp.DefaultResolver()
        found = await self._lookup.resolve(host, port, family)
        kept: list[ResolveResult] = []
        refusals: list[str] = []
        for result in found:
            reason = resolved_refusal(
                host, result["host"], port, self._rules, check_listener=self._check_listener
            )
            if reason is None:
                kept.append(result)
            elif reason not in refusals:
                refusals.append(reason)
        if not kept and refusals:
            # Raised, not logged here: the failed attempt is logged once by its caller.
            raise UpstreamRefused("; ".join(refusals))
        if refusals:
            # Some addresses are kept: the connection goes ahead, so say once per lookup
            # (once per DNS cache entry) what was left out.
            log.warning("addresses left out of %s:%d: %s", host, port, "; ".join(refusals))
        return kept

    async def close(self) -> None:
        if self._owns_lookup and self._lookup is not None:
            await self._lookup.close()
            self._lookup = None


def literal_refusal(url: URL, rules: UpstreamRules, *, check_listener: bool = True) -> str | None:
    """Why a connection to `url` is refused when its host is an IP address as written, else
    None (a name is `GuardedResolver`'s to judge, once it resolves)."""
    host = url.raw_host or ""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    # The origin only: the rules speak of hosts and ports, and a path may hold a secret.
    return upstream_refusal(
        str(url.origin()), rules, field="the URL", check_listener=check_listener
    )


def guarded_trace(rules: UpstreamRules, *, check_listener: bool = True) -> aiohttp.TraceConfig:
    """A session's hooks that keep it within `rules` whatever URL it is handed: a host written
    as an IP address is judged before connecting (`UpstreamRefused`), as the resolver judges
    the addresses of a name; a redirect raises instead of being followed (its Location may
    name any host, and the request's key would go with it)."""

    async def on_request_start(
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        reason = literal_refusal(params.url, rules, check_listener=check_listener)
        if reason is not None:
            raise UpstreamRefused(reason)

    async def on_request_redirect(
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestRedirectParams,
    ) -> None:
        raise UpstreamRefused(f"a redirect (HTTP {params.response.status}) is never followed")

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    trace.on_request_redirect.append(on_request_redirect)
    return trace


def refusal_of(error: BaseException) -> str | None:
    """The upstream rules' reason when `error` is a connection they refused, else None."""
    cause = getattr(error, "os_error", None)  # ClientConnectorError keeps the OSError here
    return cause.reason if isinstance(cause, UpstreamRefused) else None
