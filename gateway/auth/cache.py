"""The verified-token cache: a repeated token costs one dict lookup, until it expires.

Entries map the token string to (value, deadline), deadline being `exp + leeway`;
past it the entry is dropped and the token refused. When full, expired entries
go first, then the oldest half. `forget` drops entries before their deadline: their
tokens are looked up as unknown, so verified again.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from typing import Generic, TypeVar

from gateway.auth.claims import MSG_EXPIRED
from gateway.errors import AuthenticationFailed

V = TypeVar("V")
DEFAULT_MAX_CACHED = 10_000


class TokenCache(Generic[V]):
    def __init__(self, clock: Callable[[], float], max_entries: int = DEFAULT_MAX_CACHED) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self.entries: dict[str, tuple[V, float]] = {}

    def get(self, token: str) -> tuple[V, float] | None:
        """The (value, deadline) entry while valid, None when unknown; expired raises 401."""
        entry = self.entries.get(token)
        if entry is None or self._clock() <= entry[1]:
            return entry
        self.entries.pop(token, None)
        raise AuthenticationFailed(MSG_EXPIRED, token_sent=True)

    def remember(self, token: str, value: V, deadline: float) -> None:
        entries = self.entries
        if len(entries) >= self._max_entries:
            now = self._clock()
            for stale in [t for t, (_, until) in entries.items() if until < now]:
                del entries[stale]
            if len(entries) >= self._max_entries:
                for oldest in list(islice(entries, max(1, len(entries) // 2))):
                    del entries[oldest]
        entries[token] = (value, deadline)

    def forget(self, is_stale: Callable[[V], bool]) -> None:
        """Drop the entries whose value `is_stale`; their tokens are verified again."""
        entries = self.entries
        for token in [t for t, (value, _) in entries.items() if is_stale(value)]:
            del entries[token]

    def clear(self) -> None:
        self.entries.clear()
