"""External issuers' public keys: discovered, fetched from their JWKS, cached, refreshed sparingly.

Owns where an issuer's keys live (the configured `jwks_uri`, else OpenID
Connect discovery, then RFC 8414 metadata, whose `issuer` must equal the
configured one), fetching them (one aiohttp session, a timeout, a size cap),
parsing a JWKS into verification keys, choosing the key for a token, and when
to fetch again: on an unknown `kid` at most once per `min_refetch_interval_s`
per issuer, concurrent callers sharing one fetch; keys older than
`max_key_age_s` are refreshed in the background. A failed fetch never drops
keys: the last good set stays in use while the issuer is unreachable, but a
kid it lacks is then unknowable, not absent (`KeysUnavailable`). A kid that a
fetch which succeeded within the refetch interval lacks is absent: the keys are
as fresh as the rate limit allows (IdPs publish a key before they sign with
it). A fetch that lacks a key the previous one held (withdrawn, or replaced under
its kid) is told to the `on_withdrawn` listeners, so tokens verified with it are
not accepted from a cache any longer. Every URL
(discovery documents, a discovered `jwks_uri`) is checked against the upstream
rules before it is fetched (`policy/upstreams.py`: never a metadata or
link-local address; within GATEWAY_UPSTREAM_ALLOW when set); a refused one is
logged once and not requested. The addresses its host resolves to are checked
again when connecting (`providers/resolver.py`), so a name pointing at the
metadata service is refused too. Verifying tokens is not done here (`external.py`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, Key, OKPKey, RSAKey

from gateway.policy.upstreams import UpstreamRules, upstream_refusal
from gateway.providers.resolver import GuardedResolver, refusal_of
from gateway.providers.upstream_connections import GuardedConnector

log = logging.getLogger(__name__)

MIN_REFETCH_INTERVAL_S = 10.0
# Refreshed in the background after this, unknown kid or not: a key the issuer withdrew
# (compromised) is trusted at most this long (an hour before; probe p15).
MAX_KEY_AGE_S = 600.0
FETCH_TIMEOUT_S = 5.0
MAX_DOCUMENT_BYTES = 512 * 1024  # Entra's JWKS with x5c chains is ~20 KB
MAX_KEYS = 100
MAX_REDIRECTS = 3
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_EDDSA_CURVES = frozenset({"Ed25519", "Ed448"})
# Private and symmetric members: a JWKS must not carry them, and we never use them.
_SECRET_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
NO_ALLOW_LIST = UpstreamRules(allow=None, listener=None)


class KeysUnavailable(Exception):
    """The issuer's keys could not be fetched: none were ever, or the key asked for may be
    among those the failed fetch missed. `retry_in_s`: until the next fetch may run."""

    def __init__(self, issuer: str, retry_in_s: float) -> None:
        super().__init__(issuer)
        self.issuer = issuer
        self.retry_in_s = retry_in_s


class _FetchFailed(Exception):
    """Internal: one fetch went wrong; the message (no secrets) goes to the log."""


class _UrlRefused(_FetchFailed):
    """Internal: a URL the upstream rules refuse (metadata, outside the allow-list); not fetched."""


MAX_REPORTED_REFUSALS = 100  # refused URLs logged once each; a bound, as metadata may vary them


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where one issuer's keys come from: its `jwks_uri`, or discovery when None."""

    issuer: str
    jwks_uri: str | None = None


# --- pure parts ------------------------------------------------------------------


def discovery_urls(issuer: str) -> tuple[str, ...]:
    """Metadata URLs to try in order: OpenID Connect, then RFC 8414 (path inserted, appended)."""
    base = issuer.rstrip("/")
    parts = urlsplit(base)
    urls = [f"{base}/.well-known/openid-configuration"]
    urls.append(
        f"{parts.scheme}://{parts.netloc}/.well-known/oauth-authorization-server{parts.path}"
    )
    urls.append(f"{base}/.well-known/oauth-authorization-server")
    return tuple(dict.fromkeys(urls))


def discovered_jwks_uri(document: object, issuer: str) -> str:
    """`jwks_uri` from a metadata document whose `issuer` is exactly ours (else ValueError)."""
    if not isinstance(document, dict):
        raise ValueError("metadata is not a JSON object")
    if document.get("issuer") != issuer:
        # RFC 8414 §3.3 / OIDC Discovery §4.3: a mismatch means the wrong (or a forged) server.
        raise ValueError(f"metadata names issuer {document.get('issuer')!r}, not {issuer!r}")
    uri = document.get("jwks_uri")
    if not isinstance(uri, str) or urlsplit(uri).scheme not in ("http", "https"):
        raise ValueError("metadata has no http(s) jwks_uri")
    return uri


def parse_jwks(document: object) -> tuple[Key, ...]:
    """The signature-verification keys of a JWK set; unusable entries are skipped.

    Skipped: symmetric keys (a published `oct` key would let anyone sign), keys
    whose `use` or `key_ops` exclude verification, and entries joserfc cannot
    import. Private members are dropped before import. ValueError when the
    document is not a JWK set at all.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK set")
    keys = []
    for entry in document["keys"][:MAX_KEYS]:
        key = _verification_key(entry)
        if key is not None:
            keys.append(key)
    return tuple(keys)


def _verification_key(entry: object) -> Key | None:
    if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC", "OKP"):
        return None
    if entry.get("use", "sig") != "sig":
        return None
    ops = entry.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    if not isinstance(entry.get("kid", ""), str) or not isinstance(entry.get("alg", ""), str):
        return None
    public = {name: value for name, value in entry.items() if name not in _SECRET_MEMBERS}
    if public.get("alg") == "EdDSA" and public.get("crv") in _EDDSA_CURVES:
        # Named by its curve (RFC 9864), as joserfc verifies EdDSA without a deprecation warning.
        public["alg"] = public["crv"]
    weak = rsa_weakness(public)
    if weak is not None:
        log.warning(
            "JWKS entry skipped: %s", weak, extra={"fields": {"kid": str(public.get("kid"))}}
        )
        return None
    try:
        return JWKRegistry.import_key(public)
    except (JoseError, ValueError, TypeError) as error:
        log.debug("JWKS entry skipped: %s", type(error).__name__)
        return None


# RFC 7518 §3.3: RS*/PS* keys are 2048 bits or more. A smaller one is cheap to factor, and
# whoever factors it signs tokens as the issuer (probe p15: a 512-bit key was accepted).
MIN_RSA_BITS = 2048
MIN_RSA_EXPONENT = 65537  # e = 3 invites the forgeries of lax verifiers; no IdP uses it


def rsa_weakness(entry: dict[str, Any]) -> str | None:
    """Why a JWK set's RSA entry is too weak to trust, or None (an unreadable one is left
    to the import to refuse; any other key type: None)."""
    if entry.get("kty") != "RSA":
        return None
    modulus, exponent = _b64_int(entry.get("n")), _b64_int(entry.get("e"))
    if modulus is None or exponent is None:
        return None
    if modulus.bit_length() < MIN_RSA_BITS:
        return f"an RSA key of {modulus.bit_length()} bits (at least {MIN_RSA_BITS} needed)"
    if exponent < MIN_RSA_EXPONENT:
        return f"an RSA key with public exponent {exponent} (at least {MIN_RSA_EXPONENT})"
    return None


def _b64_int(value: object) -> int | None:
    # Read before the import: joserfc warns (SecurityWarning) on importing a short key.
    if not isinstance(value, str) or len(value) > 2048:  # 12,000-bit keys fit
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, TypeError):
        return None
    return int.from_bytes(raw, "big")


def key_fits(key: Key, alg: str) -> bool:
    """May `key` verify a signature made with `alg`? (key type, curve, and the key's own `alg`)"""
    # RFC 9864 names Ed25519/Ed448 keys by curve; tokens may still say "EdDSA".
    if key.alg not in (None, alg) and not (alg == "EdDSA" and key.alg in _EDDSA_CURVES):
        return False
    if alg.startswith(("RS", "PS")):
        return isinstance(key, RSAKey)
    if alg in _EC_CURVES:
        return isinstance(key, ECKey) and key.curve_name == _EC_CURVES[alg]
    if alg == "EdDSA":
        return isinstance(key, OKPKey) and key.curve_name in _EDDSA_CURVES
    return False


def select_key(keys: Sequence[Key], kid: str | None, alg: str) -> Key | None:
    """The key for a token's `kid` and `alg`; without a `kid`, only when exactly one key fits."""
    fitting = [key for key in keys if key_fits(key, alg)]
    if kid is None:
        return fitting[0] if len(fitting) == 1 else None
    return next((key for key in fitting if key.kid == kid), None)


def knows_kid(keys: Sequence[Key], kid: str) -> bool:
    return any(key.kid == kid for key in keys)


def drops_a_key(old: Sequence[Key], new: Sequence[Key]) -> bool:
    """Does `new` lack a key of `old`: a kid gone, or its key material replaced (by thumbprint)?"""
    kept = {(key.kid, key.thumbprint()) for key in new}
    return any((key.kid, key.thumbprint()) not in kept for key in old)


def may_fetch(last_attempt_at: float | None, now: float, min_interval_s: float) -> bool:
    """One fetch per interval per issuer, whatever prompted it (unknown kid, age, first use)."""
    return last_attempt_at is None or now - last_attempt_at >= min_interval_s


def next_fetch_in(last_attempt_at: float | None, now: float, min_interval_s: float) -> float:
    """Seconds until `may_fetch` allows the next fetch (0 when it does now)."""
    if last_attempt_at is None:
        return 0.0
    return min(max(last_attempt_at + min_interval_s - now, 0.0), min_interval_s)


# --- the cache ---------------------------------------------------------------------


@dataclass(slots=True)
class _IssuerKeys:
    keys: tuple[Key, ...] = ()
    has_keys: bool = False  # a fetch has succeeded at least once
    fetched_at: float | None = None  # last success
    attempted_at: float | None = None  # last attempt, successful or not
    failed: bool = False  # the last attempt failed: what it would have fetched is unknown
    discovered_uri: str | None = None
    inflight: asyncio.Task[None] | None = None


def _settles_kid(state: _IssuerKeys, kid: str, now: float, min_interval_s: float) -> bool:
    """Do the keys in memory say whether the issuer has `kid`? Yes when they hold it, or
    when they are as fresh as the rate limit allows: the last fetch succeeded within
    `min_interval_s`, so no newer one may run yet."""
    if knows_kid(state.keys, kid):
        return True
    return (
        not state.failed
        and state.fetched_at is not None
        and now - state.fetched_at < min_interval_s
    )


class JwksCache:
    """Per-issuer key sets for the whole process; `close()` it with the services.

    `clock` is monotonic seconds and public so tests of a running gateway can
    move time past the refetch interval.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        min_refetch_interval_s: float = MIN_REFETCH_INTERVAL_S,
        max_key_age_s: float = MAX_KEY_AGE_S,
        timeout_s: float = FETCH_TIMEOUT_S,
        max_document_bytes: int = MAX_DOCUMENT_BYTES,
        upstreams: UpstreamRules = NO_ALLOW_LIST,
        lookup: AbstractResolver | None = None,
    ) -> None:
        """`upstreams`: where keys may be fetched from (the rules api_base obeys, less the
        listener check); by default anywhere but metadata and link-local addresses.
        `lookup`: the name resolver those rules guard (default: aiohttp's)."""
        self.clock = clock
        self._upstreams = upstreams
        self._lookup = lookup
        self._resolver: GuardedResolver | None = None
        self._reported: set[str] = set()
        self._min_interval_s = min_refetch_interval_s
        self._max_age_s = max_key_age_s
        self._timeout_s = timeout_s
        self._max_bytes = max_document_bytes
        self._issuers: dict[KeySource, _IssuerKeys] = {}
        self._session: aiohttp.ClientSession | None = None
        self._withdrawal_listeners: list[Callable[[str], None]] = []

    def on_withdrawn(self, listener: Callable[[str], None]) -> None:
        """Call `listener(issuer)` after each fetch of the issuer's keys that lacks a key the
        previous one held: whatever was verified with that key must be verified again."""
        self._withdrawal_listeners.append(listener)

    async def keys(self, source: KeySource) -> tuple[Key, ...]:
        """The issuer's keys: fetched on first use, then from memory (refreshed when old).

        Raises KeysUnavailable when no fetch has ever succeeded (the one just tried
        failed, or the last one did and none may run yet).
        """
        state = self._issuers.setdefault(source, _IssuerKeys())
        now = self.clock()
        may_start = may_fetch(state.attempted_at, now, self._min_interval_s)
        if not state.has_keys:
            if state.inflight is not None or may_start:
                await self._fetch_shared(source, state)
            if not state.has_keys:
                raise self._unavailable(source, state)
        elif (
            state.fetched_at is not None
            and now - state.fetched_at >= self._max_age_s
            and state.inflight is None
            and may_start
        ):
            self._start_fetch(source, state)  # keep serving the current keys meanwhile
        return state.keys

    async def refetch_for_unknown_kid(self, source: KeySource, kid: str) -> tuple[Key, ...]:
        """Keys that settle whether the issuer has `kid`, for a token whose kid the keys in
        memory lack.

        They do when they hold `kid` or came from a fetch that succeeded within the
        refetch interval: as fresh as the rate limit allows, so a kid they lack is
        absent (401), not new. A fetch under way is joined (concurrent tokens share it),
        else one runs if the rate limit allows. KeysUnavailable when none settles it (the
        last fetch failed and the rate limit holds): unknown, not absent.
        """
        state = self._issuers.setdefault(source, _IssuerKeys())
        if state.inflight is not None:
            await self._fetch_shared(source, state)  # it may bring the kid
        if not self._settles(state, kid) and may_fetch(
            state.attempted_at, self.clock(), self._min_interval_s
        ):
            await self._fetch_shared(source, state)
        if not self._settles(state, kid):
            raise self._unavailable(source, state)
        return state.keys

    def _settles(self, state: _IssuerKeys, kid: str) -> bool:
        return _settles_kid(state, kid, self.clock(), self._min_interval_s)

    def retain(self, sources: Iterable[KeySource]) -> None:
        """Forget issuers no longer configured (a policy change removed them)."""
        keep = set(sources)
        for source in [s for s in self._issuers if s not in keep]:
            state = self._issuers.pop(source)
            if state.inflight is not None:
                state.inflight.cancel()

    async def close(self) -> None:
        tasks = [s.inflight for s in self._issuers.values() if s.inflight is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._issuers.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:  # a resolver handed to a connector is not its to close
            await self._resolver.close()
            self._resolver = None

    def _unavailable(self, source: KeySource, state: _IssuerKeys) -> KeysUnavailable:
        wait = next_fetch_in(state.attempted_at, self.clock(), self._min_interval_s)
        return KeysUnavailable(source.issuer, wait)

    def _start_fetch(self, source: KeySource, state: _IssuerKeys) -> asyncio.Task[None]:
        if state.inflight is None:
            state.attempted_at = self.clock()
            state.inflight = asyncio.create_task(self._fetch(source, state))
        return state.inflight

    async def _fetch_shared(self, source: KeySource, state: _IssuerKeys) -> None:
        # shield: a caller that goes away (client disconnect) must not cancel the others' fetch.
        await asyncio.shield(self._start_fetch(source, state))

    async def _fetch(self, source: KeySource, state: _IssuerKeys) -> None:
        """One fetch; never raises: a failure is logged and the old keys stay."""
        state.failed = True  # until it succeeds: a fetch cancelled half-way learned nothing
        try:
            uri = source.jwks_uri or state.discovered_uri or await self._discover(source.issuer)
            if source.jwks_uri is None:
                state.discovered_uri = uri
            keys = parse_jwks(await self._get_json(uri))
            if not keys:  # an IdP mid-deploy, a broken document: not "every key withdrawn"
                raise ValueError("its JWK set holds no key that verifies signatures")
        except _UrlRefused as error:
            state.discovered_uri = None
            self._report_refusal(source, str(error))
        except Exception as error:  # a background task: nothing above us would log it
            state.discovered_uri = None  # discover again next time: the metadata may have moved
            log.warning(
                "could not fetch the keys of issuer %s: %s%s",
                source.issuer,
                error,
                " (keeping the last good keys)" if state.has_keys else "",
            )
        else:
            withdrawn = state.has_keys and drops_a_key(state.keys, keys)
            state.keys, state.has_keys, state.fetched_at = keys, True, self.clock()
            state.failed = False
            log.info("fetched %d key(s) of issuer %s", len(keys), source.issuer)
            if withdrawn:
                # A key withdrawn (after a compromise, say) must not live on in cached
                # principals until their exp, which the token's signer chose.
                log.info(
                    "issuer %s no longer publishes a key it did: its tokens are verified again",
                    source.issuer,
                )
                for listener in self._withdrawal_listeners:
                    listener(source.issuer)
        finally:
            state.inflight = None

    def _report_refusal(self, source: KeySource, message: str) -> None:
        """Log a refused URL once: it stays refused until the policy or environment changes."""
        if message in self._reported:
            return
        if len(self._reported) < MAX_REPORTED_REFUSALS:
            self._reported.add(message)
        log.warning("could not fetch the keys of issuer %s: %s", source.issuer, message)

    async def _discover(self, issuer: str) -> str:
        failures = []
        for url in discovery_urls(issuer):
            try:
                document = await self._get_json(url)
            except _UrlRefused:
                raise  # the issuer's host itself: no other discovery URL is any different
            except _FetchFailed as error:
                failures.append(str(error))
                continue
            return discovered_jwks_uri(document, issuer)  # a mismatch stops here
        raise _FetchFailed(f"discovery failed ({'; '.join(failures)})")

    @staticmethod
    @asynccontextmanager
    async def _get_same_origin(
        session: aiohttp.ClientSession, url: str
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET, following at most 3 redirects and only within the URL's own origin:
        keys are trusted for where the policy points, not wherever that server sends us."""
        origin = _origin(url)
        for _ in range(MAX_REDIRECTS + 1):
            async with session.get(url, allow_redirects=False) as response:
                location = response.headers.get("location")
                if response.status not in REDIRECT_STATUSES or location is None:
                    yield response
                    return
                target = urljoin(url, location)
                if _origin(target) != origin:
                    raise _FetchFailed(f"{url} redirects to another origin ({_origin(target)})")
                url = target
        raise _FetchFailed(f"{url}: more than {MAX_REDIRECTS} redirects")

    async def _get_json(self, url: str) -> object:
        refusal = upstream_refusal(url, self._upstreams, field="the URL", check_listener=False)
        if refusal is not None:  # checked before any connection: no request is made
            raise _UrlRefused(f"{url} is refused: {refusal}")
        if self._session is None:
            self._resolver = GuardedResolver(
                self._upstreams, check_listener=False, lookup=self._lookup
            )
            self._session = aiohttp.ClientSession(
                connector=GuardedConnector(resolver=self._resolver),
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
                headers={"accept": "application/json, application/jwk-set+json"},
            )
        try:
            async with self._get_same_origin(self._session, url) as response:
                if response.status != 200:
                    raise _FetchFailed(f"{url} answered HTTP {response.status}")
                if (response.content_length or 0) > self._max_bytes:
                    raise _FetchFailed(f"{url} is larger than {self._max_bytes} bytes")
                body = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise _FetchFailed(f"{url} is larger than {self._max_bytes} bytes")
        except (aiohttp.ClientError, TimeoutError) as error:
            refused = refusal_of(error)
            if refused is not None:  # its host resolved only to addresses the rules refuse
                raise _UrlRefused(f"{url} is refused: {refused}") from None
            raise _FetchFailed(f"{url}: {type(error).__name__}") from None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise _FetchFailed(f"{url} did not answer JSON") from None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{(parts.netloc or '').lower()}"
