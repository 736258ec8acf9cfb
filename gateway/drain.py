"""The shutdown drain: after SIGTERM the listener stays open while the requests under
way (streams included) finish, and meanwhile readiness and new inference requests
answer 503, so a load balancer stops sending and a client retries elsewhere.

Owns the drain state and the rule that ends it; no I/O. The server
(gateway/server.py) begins it on the signal and hands it to the app in the ASGI
lifespan state; the edges (api/ops.py readyz, api/openai.py) read it there. A
request served without that state (an app run in-process by a test) is never
draining.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.errors import GatewayError

# The key under which the server puts its Drain into the lifespan state (and so
# into every request's scope["state"]).
DRAIN_STATE_KEY = "gateway.drain"


@dataclass(slots=True)
class Drain:
    """Whether this process is shutting down, and since when (a monotonic instant)."""

    began_at: float | None = None

    @property
    def is_draining(self) -> bool:
        return self.began_at is not None

    def begin(self, now: float) -> bool:
        """Start draining at `now`; False if it had already begun (the first start counts)."""
        if self.began_at is not None:
            return False
        self.began_at = now
        return True


def is_draining(state: Mapping[str, object] | None) -> bool:
    """Is the process that serves this request (its scope["state"]) draining?"""
    drain = state.get(DRAIN_STATE_KEY) if state is not None else None
    return isinstance(drain, Drain) and drain.is_draining


def drain_is_over(elapsed_s: float, busy: int, grace_s: float) -> bool:
    """May the server stop listening now? When nothing is under way, or the grace is spent
    (what still runs then is cut: its client sees the connection end)."""
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
