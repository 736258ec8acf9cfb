"""The shutdown drain: after SIGTERM the listener stays open while the requests under
way (streams included) finish, and meanwhile readiness and new inference requests
answer 503, so a load balancer stops sending and a client retries elsewhere.

When the grace runs out the drain cuts the inference requests still under way: the
server cancels their tasks, and each ends itself as a shutdown cut (a stream with
an error event, a request not yet answered with a 503; its record says 503) rather
than being dropped later by uvicorn's own shutdown deadline with the connection.

Owns the drain state and the rule that ends it; no I/O. The server
(gateway/server.py) begins it on the signal and hands it to the app in the ASGI
lifespan state; the edges (api/ops.py readyz, api/openai.py) read it there, and
the inference edge tracks its requests' tasks in it. A request served without that
state (an app run in-process by a test) is never draining.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.errors import GatewayError

# The key under which the server puts its Drain into the lifespan state (and so
# into every request's scope["state"]).
DRAIN_STATE_KEY = "gateway.drain"


@dataclass(slots=True)
class Drain:
    """Whether this process is shutting down, since when (a monotonic instant), and
    whether its grace ran out (`cut_at`) with the inference requests `under_way` cut."""

    began_at: float | None = None
    cut_at: float | None = None
    under_way: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def is_draining(self) -> bool:
        return self.began_at is not None

    @property
    def is_cut(self) -> bool:
        """Has the grace run out? Then a cancelled inference request was cut by the shutdown."""
        return self.cut_at is not None

    def begin(self, now: float) -> bool:
        """Start draining at `now`; False if it had already begun (the first start counts)."""
        if self.began_at is not None:
            return False
        self.began_at = now
        return True

    def track(self, task: asyncio.Task[None]) -> None:
        """An inference request's task, cut (cancelled) if it is still under way at the end."""
        self.under_way.add(task)

    def untrack(self, task: asyncio.Task[None]) -> None:
        self.under_way.discard(task)

    def cut(self, now: float) -> tuple[asyncio.Task[None], ...]:
        """The grace is spent at `now`: the requests under way, for the server to cancel
        (the first cut counts; a later one has none left to cut)."""
        if self.cut_at is not None:
            return ()
        self.cut_at = now
        return tuple(self.under_way)


def drain_of(state: Mapping[str, object] | None) -> Drain | None:
    """The Drain of the process that serves this request (its scope["state"]), if any."""
    drain = state.get(DRAIN_STATE_KEY) if state is not None else None
    return drain if isinstance(drain, Drain) else None


def is_draining(state: Mapping[str, object] | None) -> bool:
    """Is the process that serves this request (its scope["state"]) draining?"""
    drain = drain_of(state)
    return drain is not None and drain.is_draining


def drain_is_over(elapsed_s: float, busy: int, grace_s: float) -> bool:
    """May the server stop listening now? When nothing is under way, or the grace is spent
    (the inference requests still under way are then cut: each ends itself with the
    shutdown_cut 503, as an error event on a stream)."""
    return busy <= 0 or elapsed_s >= grace_s


class ShuttingDown(GatewayError):
    """A new request reached a replica that is draining: retryable elsewhere at once."""

    status = 503
    type = "api_error"
    code = "server_shutting_down"


def shutting_down() -> ShuttingDown:
    # `connection: close` makes the client's next try open a new connection, which a
    # load balancer sends to a replica that is not draining.
    return ShuttingDown(
        "This gateway replica is shutting down and takes no new requests; retry.",
        headers={"retry-after": "0", "connection": "close"},
    )


class ShutdownCut(GatewayError):
    """A request still under way when the drain's grace ran out: cut, retryable elsewhere.
    Told in the stream's own error event once its status line has gone out."""

    status = 503
    type = "api_error"
    code = "server_shutting_down"


def shutdown_cut() -> ShutdownCut:
    return ShutdownCut(
        "This gateway replica is shutting down and its drain time ran out before this "
        "request ended; it was cut. Retry.",
        headers={"retry-after": "0", "connection": "close"},
    )
