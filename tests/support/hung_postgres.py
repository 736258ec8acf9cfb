"""A fake PostgreSQL on its own loopback port that hangs: a stopped server, or a pooler
whose backend is gone, without touching the server other tests share.

    with HungPostgres() as hung:                       # accepts TCP, never writes a byte
        url = f"postgresql+asyncpg://u:p@127.0.0.1:{hung.port}/db"
    with HungPostgres(answers_handshake=True) as hung:  # logs the client in, then hangs

`answers_handshake`: declines TLS, accepts any password (AuthenticationOk) and says it is
ready for a query, as pgbouncer does before it has a server connection; no query is
ever answered. Its own thread and event loop, so a test that blocks never stalls it.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from types import TracebackType

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


_LOGGED_IN = (
    _message(b"R", struct.pack("!I", 0))  # AuthenticationOk
    + _message(b"S", b"server_version\x0016.0\x00")
    + _message(b"S", b"client_encoding\x00UTF8\x00")
    + _message(b"K", struct.pack("!II", 1, 2))  # BackendKeyData
    + _message(b"Z", b"I")  # ReadyForQuery, idle
)


class HungPostgres:
    def __init__(self, *, answers_handshake: bool = False) -> None:
        self.answers_handshake = answers_handshake
        self.port = 0
        self.connections = 0  # accepted since start
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    def __enter__(self) -> HungPostgres:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._hang, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()

    async def _hang(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            if self.answers_handshake:
                await self._log_in(reader, writer)
            await reader.read()  # until the client gives up; never an answer
        except (ConnectionError, asyncio.IncompleteReadError):
            pass

    async def _log_in(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            (length,) = struct.unpack("!I", await reader.readexactly(4))
            body = await reader.readexactly(length - 4)
            if struct.unpack("!I", body[:4])[0] in (_SSL_REQUEST, _GSSENC_REQUEST):
                writer.write(b"N")  # no TLS here: the client goes on in plain text
                continue
            break  # the StartupMessage
        writer.write(_LOGGED_IN)
        await writer.drain()
