"""The gateway's connections to its upstreams: pooled, and never read for the wrong request.

aiohttp keeps a kept-alive connection in its pool whatever arrives on it while idle, and
reads those bytes as the answer to the next request sent on it. An upstream (or a proxy
before it) that answers once too often, late, thus handed one request's answer to the
next request of any team (probe p22: team beta got team alpha's prompt back, its own
request never sent). httpx and urllib3 drop an idle connection that turned readable;
so does this pool: bytes while idle close the connection, and a connection whose
answer left anything unread is not kept (aiohttp's own rule, `should_close`).

Also here: what an upstream's transport failure says in a log line. aiohttp's messages
quote the URL (a `${VAR}` token in an `api_base` path) and, for a bad status line, the
first bytes of the body (completion text): only the failure's kind is kept.
"""

from __future__ import annotations

import functools
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler

# A whole answer larger than this is no answer to relay: the read stops there and the
# attempt fails (an endless body held 4 GB, a gzip bomb inflated to 1 GB: probe p22).
# Large enough for any real one (2,048 embeddings of 3,072 floats as JSON: ~65 MB).
MAX_ANSWER_BYTES = 256 * 1024 * 1024
_READ_PIECE = 1 << 16


class _IdleGuardedHandler(ResponseHandler):
    """aiohttp's protocol that closes its connection on bytes received while idle."""

    is_idle = False

    def data_received(self, data: bytes) -> None:
        if self.is_idle and data:
            self.is_idle = False
            self.close()  # not connected any more: the pool drops it, never reads it
            return
        super().data_received(data)


class GuardedConnector(aiohttp.TCPConnector):
    """TCPConnector whose idle connections are `_IdleGuardedHandler`s."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # aiohttp's own factory attribute: its type names the base class.
        self._factory = functools.partial(_IdleGuardedHandler, loop=self._loop)  # type: ignore[assignment]

    async def _get(self, key: Any, traces: list[Any]) -> Any:
        connection = await super()._get(key, traces)
        if connection is not None and isinstance(connection.protocol, _IdleGuardedHandler):
            connection.protocol.is_idle = False  # taken for a request: its answer is due
        return connection

    def _release(self, key: Any, protocol: ResponseHandler, *, should_close: bool = False) -> None:
        if isinstance(protocol, _IdleGuardedHandler):
            protocol.is_idle = True  # back in the pool (or closed below): nothing is due
        super()._release(key, protocol, should_close=should_close)


async def read_answer_bytes(response: aiohttp.ClientResponse) -> bytes:
    """The whole (decompressed) body; ValueError past MAX_ANSWER_BYTES, declared or read."""
    limit = MAX_ANSWER_BYTES
    declared = response.content_length
    if declared is not None and "content-encoding" not in response.headers:
        if declared > limit:
            raise ValueError(f"answer larger than {limit} bytes")
        return await response.read()  # a length, as sent: bounded (the usual answer, one call)
    pieces: list[bytes] = []
    size = 0
    async for piece in response.content.iter_chunked(_READ_PIECE):
        size += len(piece)
        if size > limit:
            raise ValueError(f"answer larger than {limit} bytes")
        pieces.append(piece)
    return b"".join(pieces)


def transport_failure(exc: aiohttp.ClientError) -> str:
    """What a failed upstream exchange says in a log line: its kind, never the URL or
    the bytes aiohttp's message may quote."""
    if isinstance(exc, aiohttp.ClientResponseError):
        reason = exc.message.split("\n", 1)[0].split(":", 1)[0].strip()[:80]
        return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ServerDisconnectedError):
        return f"{type(exc).__name__}: {exc}"  # host and port, no path; or a fixed text
    return type(exc).__name__
