"""A loopback server standing in for a Redis at its maxclients (or a proxy whose
backend is down): it accepts, says "max number of clients reached", and closes; until
told to let clients in, then it answers +PONG to every command.

    doorman = Doorman()            # its own thread
    ... RespConnection("127.0.0.1", doorman.port, ...) ...
    doorman.full = False           # Redis accepts again
    doorman.close()
"""

from __future__ import annotations

import contextlib
import socket
import threading

from gateway.limits.resp import _Incomplete, parse

FULL = b"-ERR max number of clients reached\r\n"


class Doorman:
    """A loopback server in a thread: while `full`, a Redis at its maxclients (accepts,
    says so, closes); else one that answers +PONG to every command it reads."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self.full = True
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.full:
                with contextlib.suppress(OSError):
                    client.sendall(FULL)
                client.close()
            else:
                threading.Thread(target=self._answer, args=(client,), daemon=True).start()

    def _answer(self, client: socket.socket) -> None:
        buffer = b""
        with client, contextlib.suppress(OSError):
            while data := client.recv(65536):
                buffer += data
                pos, replies = 0, b""
                with contextlib.suppress(_Incomplete):
                    while pos < len(buffer):
                        _, pos = parse(buffer, pos)  # a command is an array: it parses
                        replies += b"+PONG\r\n"
                buffer = buffer[pos:]
                client.sendall(replies)
