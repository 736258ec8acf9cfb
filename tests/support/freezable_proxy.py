"""A loopback TCP proxy a test can also freeze: a database that hangs (its server stopped
with SIGSTOP) rather than one that is gone, without stopping the server others share.

    with FreezableProxy("127.0.0.1", 5432) as proxy:
        proxy.freeze()    # connections still accepted, no byte goes either way
        proxy.thaw()      # the held bytes flow again
        proxy.cut()       # as TcpProxy: open connections reset, new ones refused
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

from tests.support.tcp_proxy import TcpProxy


class FreezableProxy(TcpProxy):
    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__(target_host, target_port)
        self._thawed: asyncio.Event | None = None

    def __enter__(self) -> FreezableProxy:
        super().__enter__()
        self._call(self._make_event())
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.thaw()  # so no pipe is left waiting when the loop stops
        super().__exit__(kind, exc, tb)

    def freeze(self) -> None:
        self._call(self._set_thawed(False))

    def thaw(self) -> None:
        self._call(self._set_thawed(True))

    async def _make_event(self) -> None:
        self._thawed = asyncio.Event()
        self._thawed.set()

    async def _set_thawed(self, thawed: bool) -> None:
        assert self._thawed is not None
        if thawed:
            self._thawed.set()
        else:
            self._thawed.clear()

    async def _pipe(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        assert self._thawed is not None
        thawed = self._thawed
        self.connections += 1
        self._writers.add(client_w)
        await thawed.wait()  # a stopped server: the handshake completes, nothing answers
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._writers.add(server_w)

        async def copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await reader.read(65536):
                    await thawed.wait()
                    writer.write(data)
                    await writer.drain()
            writer.transport.abort()

        await asyncio.gather(copy(client_r, server_w), copy(server_r, client_w))
        self._writers.discard(client_w)
        self._writers.discard(server_w)
