"""A minimal Redis client for the limits hot path: EVALSHA of the reserve and settle
scripts over one pipelined connection.

Why not redis-py here: each redis-py command costs ~85 µs of CPU on this machine
(connection checkout, generic argument encoding, a RESP3 parser written for every
reply type), where the same round trip over a bare asyncio connection costs ~13
µs; the limits stage makes one or two of them per request. This client only
writes commands and reads the replies the scripts give (integers, strings,
arrays, errors), in order: any number of callers share the connection, their
commands pipelined as they come. Everything else (seeding, the usage view,
health) stays on redis-py.

A reply that does not come within the timeout, or a connection that drops, fails
every command in flight and closes the connection (later replies could no longer
be matched to their commands); the next command connects again. A connection lost is
never written to again nor kept: one closed before it was handed out (a Redis at its
maxclients, or a proxy whose backend is down, accepts, then closes) fails the connect
with NotSent; a command meeting a closed one (uvloop raises RuntimeError there, asyncio
drops the bytes) fails with NotSent too, and the next command connects anew.

The timeout is kept by one watchdog per connection, ticking while commands are in
flight, not by a timer made and cancelled per command (asyncio's timers are Python
code: ~3 µs a command). A command given up on may still run: a hung (stopped, not
dead) Redis reads it from its socket when it wakes, after the gateway went on without
it (redis_backend.py makes a late reserve harmless). Only NotSent (no connection could
be made, or it was closed before the command was written) says it never will.

The scripts its callers call (EVALSHA) are loaded when it connects. A Redis that forgot
them (SCRIPT FLUSH; a restart that kept its keys) refuses a call with NOSCRIPT, and none
of it ran: the command is written again the moment that reply is read, behind every
script loaded again, before any other command can be written. Order holds: a reserve
sent after a settle never runs before it (the settle frees the slot the reserve wants).

A greeting (redis_generation.py's) goes on each new connection before anything else:
when its reply says the server is not the one commands were made for, the call that
connected fails with ServerChanged (nothing sent), and the connection is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

CRLF = b"\r\n"
# The watchdog ticks this many times per timeout (see _Link._watch).
WATCH_TICKS = 5
# A command: its parts, or already framed in RESP (limits/redis_calls.py).
Command = tuple[bytes | str | int, ...] | bytes
# What makes the command for each new connection, and what reads its reply (an error
# reply as a RespError value): False when the commands made before must not be sent; raising
# ConnectionError when the connection must not be used (the call fails as not sent).
Greeting = tuple[Callable[[], Command], Callable[[Any], bool]]


class RespError(Exception):
    """Redis answered a command with an error."""


class NoScript(RespError):
    """EVALSHA of a script this Redis does not know (it restarted, or was flushed)."""


class NotSent(ConnectionError):
    """No connection could be made: the commands were never written (none of them can
    run later), unlike a timeout, after which a hung Redis may still run them."""


class ServerChanged(NotSent):
    """Connected, and the greeting says the server is not the one the commands were made
    for (redis_generation.py): they are not sent; made again, they may go."""


class _Incomplete(Exception):
    """The buffer ends inside a reply: wait for more bytes."""


def bulk(part: bytes | str | int) -> bytes:
    """One command part in RESP: a bulk string."""
    data = part if isinstance(part, bytes) else str(part).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def pack(command: Command) -> bytes:
    """One command in RESP: an array of bulk strings (as it is, when already framed)."""
    if type(command) is bytes:
        return command
    return b"*%d\r\n" % len(command) + b"".join(map(bulk, command))


def parse(buf: bytes | bytearray, pos: int) -> tuple[Any, int]:
    """One reply starting at `pos`: (value, position after it). An error reply is
    returned as a RespError value, not raised (it answers one command only)."""
    end = buf.find(CRLF, pos)
    if end < 0:
        raise _Incomplete
    kind, line = buf[pos : pos + 1], buf[pos + 1 : end]
    pos = end + 2
    if kind == b":":
        return int(line), pos
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            raise _Incomplete
        return bytes(buf[pos : pos + size]), pos + size + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, pos
        items = []
        for _ in range(count):
            item, pos = parse(buf, pos)
            items.append(item)
        return items, pos
    if kind == b"+":
        return bytes(line), pos
    if kind == b"-":
        text = bytes(line).decode(errors="replace")
        return (NoScript if text.startswith("NOSCRIPT") else RespError)(text), pos
    raise ConnectionError(
        f"unexpected reply from Redis: {bytes(buf[pos - 2 - len(line) :])[:40]!r}"
    )


# A command in flight: the future its reply goes to, and the command, to write again
# once if Redis refuses it for a script it forgot (None: not again).
Waiting = tuple[asyncio.Future[Any], Command | None]


class _Link(asyncio.Protocol):
    """One connection and the commands in flight on it, oldest first."""

    def __init__(self, owner: RespConnection, timeout_s: float) -> None:
        self._owner = owner
        self._timeout_s = timeout_s
        self._buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[Waiting] = deque()
        self._ignored = owner.loop.create_future()  # a script load's reply goes here
        self._ignored.set_result(None)
        self._watchdog: asyncio.TimerHandle | None = None
        self._oldest: Waiting | None = None  # waiting[0] at the last tick
        self._oldest_since = 0.0  # the loop's time at the tick that first saw it
        self.lost: Exception | None = None  # why it failed: never written to again
        self._refusal: RespError | None = None  # an error a script load got (maxclients)
        self.changed = False  # the greeting said: not the server commands were made for

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        pos = 0
        waiting = self.waiting
        again: list[tuple[asyncio.Future[Any], Command]] = []  # NOSCRIPT: none of it ran
        try:
            while pos < len(buffer):
                reply, pos = parse(buffer, pos)
                if not waiting:  # a Redis at its maxclients says so, unasked, and closes
                    raise ConnectionError(f"a reply nobody asked for: {str(reply)[:80]}")
                future, command = waiting.popleft()
                if type(reply) is NoScript and command is not None and self._owner.script_loads:
                    again.append((future, command))
                elif not future.done():
                    future.set_result(reply)
                elif isinstance(reply, RespError):  # a script load's: said if Redis closes
                    self._refusal = reply
        except _Incomplete:
            pass
        except (ValueError, ConnectionError) as error:
            waiting.extend(again)  # failed with the rest
            self.fail(ConnectionError(f"unreadable reply from Redis: {error}"))
            return
        del buffer[:pos]
        if again:  # before any caller runs, so before anything they would send next
            self.load_scripts(again)

    def connection_lost(self, exc: Exception | None) -> None:
        why_closed = self._refusal or exc or "EOF"
        self.fail(ConnectionError(f"Redis closed the connection ({why_closed})"))

    def send(self, commands: list[Command]) -> list[asyncio.Future[Any]]:
        loop = self._owner.loop
        futures = [loop.create_future() for _ in commands]
        self._write(b"".join(map(pack, commands)), zip(futures, commands, strict=True))
        return futures

    def load_scripts(self, again: Sequence[tuple[asyncio.Future[Any], Command]] = ()) -> None:
        """Every script loaded (their replies ignored), and behind them, in the same write,
        the commands `again` Redis refused for a script it forgot, in their order: once
        (refused again, the reply is their caller's)."""
        loads = self._owner.script_loads
        entries: list[Waiting] = [(self._ignored, None) for _ in loads]
        entries += [(future, None) for future, _ in again]
        self._write(b"".join([*loads, *(pack(command) for _, command in again)]), entries)

    def _write(self, data: bytes, entries: Iterable[Waiting]) -> None:
        """Write, the entries waiting for the replies. On a connection closed (lost, or
        closing: its end not yet told), none of it is written: the entries fail with
        NotSent, the connection is failed and dropped (never raised: data_received calls
        this too)."""
        try:
            closed = self.closed()
            if closed is not None:
                raise closed
            self.transport.write(data)  # type: ignore[union-attr]  # raises before writing
        except (RuntimeError, ConnectionError) as error:  # uvloop: "the handler is closed"
            self.fail(error if isinstance(error, ConnectionError) else ConnectionError(why(error)))
            unsent = NotSent(f"not sent to Redis: {why(error)}")
            for future, _ in entries:
                if not future.done():
                    future.set_exception(unsent)
                    future.exception()  # retrieved: its caller may be gone
            return
        self.waiting.extend(entries)
        if self._watchdog is None:
            loop = self._owner.loop
            self._watchdog = loop.call_later(self._timeout_s / WATCH_TICKS, self._watch)

    def closed(self) -> Exception | None:
        """Why nothing can be written here any more (None: it can): lost, or closing (the
        peer's end read, connection_lost not yet called)."""
        if self.lost is not None:
            return self.lost
        if self.transport is None or self.transport.is_closing():
            return ConnectionError(f"Redis closed the connection ({self._refusal or 'closing'})")
        return None

    def _watch(self) -> None:
        """A tick: fail the connection once its oldest command has waited the timeout.
        A command is seen first at most a tick after it was sent, so counting from that
        tick, it is given up on after between the timeout less a tick and the timeout."""
        self._watchdog = None
        if not self.waiting:
            self._oldest = None
            return  # idle: the next send starts the ticks again
        loop = self._owner.loop
        oldest, now = self.waiting[0], loop.time()
        if oldest is not self._oldest:
            self._oldest, self._oldest_since = oldest, now
        elif now - self._oldest_since >= self._timeout_s * (WATCH_TICKS - 1) / WATCH_TICKS:
            self.fail(TimeoutError(f"no reply from Redis within {self._timeout_s} s"))
            return
        self._watchdog = loop.call_later(self._timeout_s / WATCH_TICKS, self._watch)

    def fail(self, error: Exception) -> None:
        """This connection is unusable (later replies could not be matched to their
        commands): fail everything in flight on it; the next command connects anew."""
        if self.lost is None:
            self.lost = error
        self._owner.forget(self)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self.transport is not None:
            self.transport.abort()
        waiting, self.waiting = self.waiting, deque()
        for future, _ in waiting:
            if not future.done():
                future.set_exception(error)
                future.exception()  # marked retrieved: its caller may be gone (timeout)


class RespConnection:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout_s: float,
        tls: bool = False,
        username: str | None = None,
        password: str | None = None,
        db: int = 0,
        scripts: tuple[str, ...] = (),
        greeting: Greeting | None = None,
    ) -> None:
        self._host, self._port, self._timeout_s = host, port, timeout_s
        self._tls, self._username, self._password, self._db = tls, username, password, db
        # The scripts its callers call: SCRIPT LOAD of each, in RESP (framed once).
        self.script_loads = [pack(("SCRIPT", "LOAD", script)) for script in scripts]
        # Sent on each new connection; its reply says whether the server is the one
        # commands made before were made for (False: the call that connected fails).
        self._greeting = greeting
        self._link: _Link | None = None
        self._connecting: asyncio.Future[_Link] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout_s: float,
        scripts: tuple[str, ...] = (),
        greeting: Greeting | None = None,
    ) -> RespConnection | None:
        """A connection for a redis:// or rediss:// URL; None for anything else (a
        unix socket, Sentinel...), which redis-py then serves."""
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname or parts.query:
            return None
        path = parts.path.strip("/")
        if path and not path.isdigit():
            return None
        return cls(
            parts.hostname,
            parts.port or 6379,
            timeout_s=timeout_s,
            tls=parts.scheme == "rediss",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            db=int(path or 0),
            scripts=scripts,
            greeting=greeting,
        )

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    async def call(self, command: Command) -> Any:
        """Send one command, return its reply (an error reply raised as RespError)."""
        reply = (await self.call_many([command]))[0]
        if isinstance(reply, RespError):
            raise reply
        return reply

    async def call_many(self, commands: list[Command]) -> list[Any]:
        """Send commands in one write; their replies in order (error replies as
        RespError values). Raises ConnectionError or TimeoutError (for all of them)."""
        futures = self.send_now(commands)
        if futures is None:
            futures = (await self._connect()).send(commands)
        return await replies(futures)

    def send_now(self, commands: list[Command]) -> list[asyncio.Future[Any]] | None:
        """Write `commands` in this call (one write), their replies to come (`replies`);
        None, nothing written, when there is no live connection on this loop to write
        to (call_many connects first)."""
        if not self.is_live():
            return None
        return self._link.send(commands)  # type: ignore[union-attr]  # live: a link

    def is_live(self) -> bool:
        """Whether a command written now goes on a connection open on this loop."""
        link = self._link
        return link is not None and link.lost is None and self._loop is asyncio.get_running_loop()

    async def connect(self) -> None:
        """Connect now unless connected (commands made after it see the greeting's
        effect). Raises NotSent when no connection could be made."""
        if not self.is_live():
            with contextlib.suppress(ServerChanged):  # connected; nothing was sent
                await self._connect()

    async def close(self) -> None:
        link = self._link
        if link is not None and self._loop is asyncio.get_running_loop():
            link.fail(ConnectionError("closed"))
        self._link = None

    def forget(self, link: _Link) -> None:
        if self._link is link:
            self._link = None

    # --- connecting ---

    async def _connect(self) -> _Link:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests): the old connection is gone
            self._link, self._connecting, self._loop = None, None, loop
        if self._connecting is not None:  # another caller is connecting: share its link
            return await asyncio.shield(self._connecting)
        connecting = self._connecting = loop.create_future()
        try:
            link = await asyncio.wait_for(self._open(loop), self._timeout_s)
            closed = link.closed()
            if closed is not None:  # closed as it opened (maxclients): never handed out
                link.fail(closed)
                raise closed
        except BaseException as error:
            self._connecting = None
            failure = NotSent(f"cannot connect to Redis: {why(error)}")
            connecting.set_exception(failure)
            connecting.exception()  # retrieved: nobody else may be waiting
            if isinstance(error, Exception):
                raise failure from error
            raise  # cancelled: the caller is gone
        self._connecting = None
        self._link = link
        if link.changed:  # kept, but what its callers made before goes nowhere
            changed = ServerChanged("Redis is a new server: the commands were not sent")
            connecting.set_exception(changed)
            connecting.exception()
            raise changed
        connecting.set_result(link)
        return link

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Link:
        context = ssl.create_default_context() if self._tls else None
        _, link = await loop.create_connection(
            lambda: _Link(self, self._timeout_s), self._host, self._port, ssl=context
        )
        setup: list[Command] = []
        if self._password is not None:
            auth: Command = ("AUTH", self._password)
            setup.append(("AUTH", self._username, self._password) if self._username else auth)
        if self._db:
            setup.append(("SELECT", self._db))
        for future in link.send(setup) if setup else ():
            reply = await future
            if isinstance(reply, RespError):
                link.fail(ConnectionError("setup refused"))
                raise ConnectionError(f"Redis refused the connection setup: {reply}")
        # Ahead of every command: a script Redis never ran (one rarely called) cannot be
        # refused after a command sent behind it ran (that one would run first).
        if self.script_loads:
            link.load_scripts()
        if self._greeting is not None:
            command, greeted = self._greeting
            reply = await link.send([command()])[0]
            try:
                link.changed = not greeted(reply)
            except ConnectionError as error:  # the server cannot answer it yet: not used
                link.fail(error)
                raise
        return link


async def replies(futures: list[asyncio.Future[Any]]) -> list[Any]:
    """The replies of commands sent together, in order (error replies as RespError
    values). Raises what failed them (ConnectionError, TimeoutError)."""
    await futures[-1]  # replies come in order: the last one done means all are...
    for future in futures:  # ...but one written again (a script forgotten), behind
        if not future.done():
            await future
    return [f.result() for f in futures]


def why(error: BaseException) -> str:
    """An error as a log or message names it: its type, and its text when it has one."""
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
