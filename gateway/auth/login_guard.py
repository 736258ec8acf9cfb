"""What keeps the token endpoint from being a CPU sink: each secret check costs ~60 ms
of scrypt, and anyone may ask for one.

Owns three guards, per process:

- a bound on secret checks running at once (`LoginGuard.slot`; the rest wait
  briefly, then are told to come back);
- failed logins limited per source address, and per (client id, source address)
  pair, over a sliding window (`retry_after_s` is the pure rule; `FailureLog`
  keeps the times);
- a short-lived cache of (client id, secret) pairs that verified
  (`VerifiedSecrets`, keyed by a SHA-256 of the pair, never the secret itself),
  so a client that fetches tokens often pays scrypt once a minute. Revoking a
  client forgets its pairs (`ClientRegistry.revoke`).

Why the client id limit is per address, not per client id alone: client ids are
public (every token carries one), so a limit on the id alone let anyone lock a
team out of its tokens with ten wrong secrets a minute, from anywhere, and the
right secret was refused too. Failures now only throttle the address that made
them: for that client id after `failures_per_client`, for any client after
`failures_per_address`. Guessing stays hopeless (secrets are 256-bit random);
what the guards bound is the scrypt CPU an unauthenticated caller can cost us,
and the address limit and the slots do that whichever ids it names.

No I/O; the clock is a parameter. The HTTP answers are `gateway/api/oauth.py`'s.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from gateway.settings import (
    DEFAULT_LOGIN_FAILURE_WINDOW_S,
    DEFAULT_LOGIN_FAILURES_PER_ADDRESS,
    DEFAULT_LOGIN_FAILURES_PER_CLIENT,
    Settings,
    default_login_concurrency,
)

MAX_TRACKED_KEYS = 10_000  # client ids and addresses are the caller's: bound the memory
# Ours are 18 characters; a longer claimed id is keyed by its start, so a key stays small
# (an attacker's long ids only ever throttle the attacker's own address).
MAX_KEYED_CLIENT_ID = 128
MAX_VERIFIED_PAIRS = 10_000


@dataclass(frozen=True, slots=True)
class LoginLimits:
    """The guards' numbers; the defaults are the settings' (GATEWAY_LOGIN_*)."""

    concurrency: int = field(default_factory=default_login_concurrency)  # secret checks at once
    wait_s: float = 1.0  # how long a request waits for a check slot before 429
    failures_per_client: int = DEFAULT_LOGIN_FAILURES_PER_CLIENT  # per (client id, address)
    failures_per_address: int = DEFAULT_LOGIN_FAILURES_PER_ADDRESS
    window_s: float = DEFAULT_LOGIN_FAILURE_WINDOW_S
    verified_ttl_s: float = 60.0  # a verified pair skips scrypt this long

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginLimits:
        return cls(
            concurrency=settings.login_concurrency,
            failures_per_client=settings.login_failures_per_client,
            failures_per_address=settings.login_failures_per_address,
            window_s=float(settings.login_failure_window_s),
        )


# --- the sliding window: pure ---


def retry_after_s(
    failures: Sequence[float], limit: int, window_s: float, now: float
) -> float | None:
    """None when one more attempt is allowed, else the seconds until it is.

    `failures` are the times of failed attempts, oldest first. An attempt is
    allowed while fewer than `limit` failures fall within the last `window_s`;
    otherwise it waits until enough of them have left the window.
    """
    recent = [at for at in failures if now - at < window_s]
    if len(recent) < limit:
        return None
    return recent[len(recent) - limit] + window_s - now


def with_failure(
    failures: Sequence[float], limit: int, window_s: float, now: float
) -> tuple[float, ...]:
    """`failures` with one at `now`, keeping only what `retry_after_s` can still need:
    the newest `limit` within the window."""
    recent = [at for at in failures if now - at < window_s]
    recent.append(now)
    return tuple(recent[-limit:])


FailureKey = str | tuple[str, str]  # an address, or (client id, address)


class FailureLog:
    """Failed-attempt times per key (an address, or a client id and address), bounded in keys."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._times: dict[FailureKey, tuple[float, ...]] = {}

    def retry_after_s(self, key: FailureKey, now: float) -> float | None:
        return retry_after_s(self._times.get(key, ()), self.limit, self.window_s, now)

    def record(self, key: FailureKey, now: float) -> None:
        times = with_failure(self._times.pop(key, ()), self.limit, self.window_s, now)
        self._times[key] = times  # re-inserted last: the dict's order is by last failure
        if len(self._times) > MAX_TRACKED_KEYS:
            del self._times[next(iter(self._times))]  # the key that failed longest ago


# --- verified pairs ---


class VerifiedSecrets:
    """(client id, secret) pairs that passed scrypt within `ttl_s`.

    Written from the worker threads that run scrypt, hence the lock. Holds
    SHA-256 digests of the pairs: a dump of the process memory does not give
    the secrets back, and a lookup costs ~1 µs instead of ~60 ms.
    """

    def __init__(
        self,
        ttl_s: float,
        *,
        max_pairs: int = MAX_VERIFIED_PAIRS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._max_pairs = max_pairs
        self._clock = clock
        self._pairs: dict[bytes, tuple[float, str]] = {}  # digest -> (expires at, client id)
        self._lock = threading.Lock()

    @staticmethod
    def _digest(client_id: str, secret: str) -> bytes:
        pair = client_id.encode("utf-8", "surrogatepass") + b"\0"
        return hashlib.sha256(pair + secret.encode("utf-8", "surrogatepass")).digest()

    def has(self, client_id: str, secret: str) -> bool:
        digest = self._digest(client_id, secret)
        with self._lock:
            entry = self._pairs.get(digest)
            if entry is None:
                return False
            if entry[0] <= self._clock():
                del self._pairs[digest]
                return False
            return True

    def remember(self, client_id: str, secret: str) -> None:
        digest = self._digest(client_id, secret)
        with self._lock:
            self._pairs.pop(digest, None)
            self._pairs[digest] = (self._clock() + self._ttl_s, client_id)
            while len(self._pairs) > self._max_pairs:
                del self._pairs[next(iter(self._pairs))]  # the oldest

    def forget_client(self, client_id: str) -> None:
        """Drop every pair of `client_id` (it was revoked)."""
        with self._lock:
            for digest in [d for d, (_, owner) in self._pairs.items() if owner == client_id]:
                del self._pairs[digest]


# --- the guard the token endpoint consults ---


def source_of(address: str) -> str:
    """Whose failures an address's are: an IPv6 address counts as its /64, which one
    host or subscriber holds whole (2^64 addresses: one key each would let a single
    attacker stay under every per-address limit); an IPv4-mapped one as its IPv4."""
    if ":" not in address:
        return address  # IPv4, or a name the server gave: as it is
    try:
        ip = ipaddress.IPv6Address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))


def _client_key(client_id: str, address: str) -> tuple[str, str]:
    return client_id[:MAX_KEYED_CLIENT_ID], address


class LoginBusy(Exception):
    """No secret-check slot came free within `LoginLimits.wait_s`."""


class LoginGuard:
    """Per-process state of the three guards; the token endpoint asks it, in this order:
    a verified pair goes straight through; else `retry_after_s` (over the limit?),
    then `slot()` around the check, then `record_failure` if it failed."""

    def __init__(self, limits: LoginLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._slots = asyncio.Semaphore(limits.concurrency)
        self._by_client = FailureLog(limits.failures_per_client, limits.window_s)
        self._by_address = FailureLog(limits.failures_per_address, limits.window_s)
        self.verified = VerifiedSecrets(limits.verified_ttl_s, clock=clock)

    def retry_after_s(self, client_id: str, address: str) -> float | None:
        """None when this attempt may go on; else when to retry (either limit reached).

        Only `address`'s own failures count (its /64, for IPv6: source_of): another
        caller's, for this client id or any other, never delay it."""
        now = self._clock()
        address = source_of(address)
        waits = [
            wait
            for wait in (
                self._by_client.retry_after_s(_client_key(client_id, address), now),
                self._by_address.retry_after_s(address, now),
            )
            if wait is not None
        ]
        return max(waits) if waits else None

    def record_failure(self, client_id: str, address: str) -> None:
        now = self._clock()
        address = source_of(address)
        self._by_client.record(_client_key(client_id, address), now)
        self._by_address.record(address, now)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the `concurrency` secret-check slots; LoginBusy after `wait_s`."""
        try:
            async with asyncio.timeout(self.limits.wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise LoginBusy from None
        try:
            yield
        finally:
            self._slots.release()
