"""The HTTP server under the app: uvicorn (httptools) with the gateway's edge
(gateway/edge.py: bounded heads, client deadlines), and `gateway serve`'s run loop.

Owns what the app cannot do itself, because it happens before a request exists or
after the app has stopped:

- the edge's protocol and limits, given to uvicorn (`server_config`);
- the drain: on SIGTERM the listener stays open while requests under way finish
  (up to `drain_grace_s`, then the inference requests still running are cut: each
  ends itself with a 503 error); meanwhile /readyz and new inference requests
  answer 503 (gateway/drain.py holds the state and the rule);
- the listeners: the teams' port, and the admin plane's own port when
  `--admin-port` is set (gateway/api/planes.py decides which serves what), bound by
  `serve` before it writes anything (`bind_listeners`);
- the exit status: after SIGTERM and a completed drain the process exits 0
  (uvicorn re-raises the signal, which would make it 143);
- SIGHUP under `--workers`: passed on to each worker, which reopens its access log
  (gateway/app.py), where uvicorn's supervisor would restart them all.

Limits travel in the uvicorn `Config` (pickled into each worker under
`--workers`), never in a module global.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.supervisors import multiprocess
from uvicorn.supervisors.multiprocess import Multiprocess

from gateway.drain import DRAIN_STATE_KEY, Drain, drain_is_over
from gateway.edge import EdgeCounters, EdgeLimits, GatewayHttpProtocol
from gateway.settings import Settings, SettingsError
from gateway.telemetry.multiproc import shared_metrics_dir

log = logging.getLogger("gateway.server")

APP = "gateway.app:app_from_env"
# uvicorn's own shutdown deadline, after the drain (gateway/drain.py) has ended: the
# requests still running then were given their grace already, or arrived during the
# drain and were answered 503 at once.
GRACEFUL_SHUTDOWN_S = 2
STARTUP_FAILURE = 3  # uvicorn's own exit status when the app cannot start


class GatewayServerConfig(uvicorn.Config):
    """uvicorn's Config carrying the edge limits to every connection of every worker, and
    the drain grace to every worker's server."""

    def __init__(
        self, app: str, *, edge_limits: EdgeLimits, drain_grace_s: float, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self.edge_limits = edge_limits
        self.edge_counters = EdgeCounters()
        self.drain_grace_s = drain_grace_s


class _Server(uvicorn.Server):
    """uvicorn's Server with the drain before its shutdown, noting whether the shutdown
    let every request finish (`drained`)."""

    drained = False
    cut_requests = 0  # inference requests the drain's grace cut (ended by their own error)

    def __init__(self, config: GatewayServerConfig, drain_grace_s: float) -> None:
        super().__init__(config)
        self.drain = Drain()
        self._drain_grace_s = drain_grace_s
        self._drain_logged = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # Every request's scope["state"] is a copy of the lifespan state: the edges find
        # the drain there (a reference, so they see it begin).
        self.lifespan.state[DRAIN_STATE_KEY] = self.drain
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The first SIGTERM or SIGINT once serving begins the drain; another one (or one
        during start-up) is uvicorn's: shut down now, with its short deadline."""
        is_stop = sig in (signal.SIGTERM, signal.SIGINT)
        if self.started and is_stop and self.drain.begin(time.monotonic()):
            self._captured_signals.append(sig)  # re-raised at the end, as uvicorn does
            return  # logged by the next tick: no logging inside a signal handler
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if await super().on_tick(counter):
            return True
        began_at = self.drain.began_at
        if began_at is None:
            return False
        if not self._drain_logged:
            self._drain_logged = True
            log.info(
                "draining: requests under way may finish, new ones get 503",
                extra={
                    "fields": {
                        "event": "drain_started",
                        "requests": len(self.server_state.tasks),
                        "grace_s": self._drain_grace_s,
                    }
                },
            )
        now = time.monotonic()
        busy = len(self.server_state.tasks)
        if not drain_is_over(now - began_at, busy, self._drain_grace_s):
            return False
        if busy:
            self._cut_under_way(now)
        return True

    def _cut_under_way(self, now: float) -> None:
        """The grace is spent: each inference request still under way is cancelled and
        ends itself as a shutdown cut (a stream: an error event, then its end), within
        uvicorn's shutdown deadline, rather than by that deadline's cancel, which closes
        the connection without a word and logs the request as an ASGI failure."""
        cut = self.drain.cut(now)
        for task in cut:
            task.cancel()
        self.cut_requests += len(cut)
        log.warning(
            "drain grace spent: requests still under way are cut",
            extra={
                "fields": {
                    "event": "drain_cut",
                    "requests": len(cut),
                    "grace_s": self._drain_grace_s,
                }
            },
        )

    async def _wait_tasks_to_complete(self) -> None:
        try:
            await super()._wait_tasks_to_complete()
        except asyncio.CancelledError:
            # uvicorn's shutdown deadline (reached when a second signal skipped the
            # drain's own cut): it cancels the requests still running next. Marked cut
            # first, each ends itself as a drain's cut does (charged, a 503 or its
            # stream's error event, recorded, its limits settled) while the lifespan
            # waits for it (services.DRAIN_S), instead of dropping its connection.
            self.drain.cut(time.monotonic())
            raise
        # Reached only when the graceful-shutdown deadline did not cut it short.
        self.drained = True


class _DrainingWorker(multiprocess.Process):
    """A `--workers` worker serving with our `_Server`: the SIGTERM its supervisor passes
    on begins the drain, as it does for a single process (uvicorn's own worker would
    stop at once and cut the streams under way)."""

    def target(self, sockets: list[socket.socket] | None = None) -> None:
        # SIGHUP's default ends the process: ignored until the app takes it to reopen the
        # access log, so a logrotate during start-up or shutdown cannot kill a worker.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        super().target(sockets)

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            config = self.config
            assert isinstance(config, GatewayServerConfig)
            self._server = _Server(config, config.drain_grace_s)
        return self._server


class _Supervisor(Multiprocess):
    """uvicorn's `--workers` supervisor, but SIGHUP (logrotate's postrotate) is passed on
    to each worker, which reopens its access log as a single process does. uvicorn's own
    answer, restarting every worker, would cut requests under way (503) and answer
    /readyz 503 meanwhile."""

    def handle_hup(self) -> None:
        for process in self.processes:
            if process.pid is None or process.exitcode is not None:
                continue  # not started, or dead: keep_subprocess_alive replaces it
            try:
                os.kill(process.pid, signal.SIGHUP)
            except ProcessLookupError:
                continue  # it died just now


@contextmanager
def _draining_workers() -> Iterator[None]:
    """uvicorn's supervisor makes its workers from the module's `Process` (no hook for
    another class): ours while it runs. The workers are spawned: they unpickle a
    `_DrainingWorker` by its own module, so only this (the parent) process is patched."""
    original = multiprocess.Process
    setattr(multiprocess, "Process", _DrainingWorker)  # noqa: B010 - a type assignment mypy refuses
    try:
        yield
    finally:
        setattr(multiprocess, "Process", original)  # noqa: B010


def server_config(settings: Settings) -> GatewayServerConfig:
    return GatewayServerConfig(
        APP,
        edge_limits=EdgeLimits.from_settings(settings),
        drain_grace_s=float(settings.drain_grace_s),
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http=GatewayHttpProtocol,
        ws="none",  # no WebSocket route: a handshake is an HTTP request like any other
        # X-Forwarded-For only from proxies the operator names: uvicorn's default trusts
        # it from 127.0.0.1, so a local peer could pick its address (and so escape the
        # token endpoint's per-address limits, or lock another address out).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies) or None,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        timeout_keep_alive=settings.keepalive_timeout_s,
    )


def run_server(settings: Settings, sockets: list[socket.socket]) -> int:
    """Serve on `sockets` (bind_listeners') until told to stop; the process exit status.

    0 after SIGTERM (or SIGINT) when every request finished within the graceful
    deadline (uvicorn would re-raise the signal: 143); 143 (130 after SIGINT) when the
    drain's grace or the deadline cut requests.
    Under `--workers` each worker drains the same way when the supervisor passes the
    SIGTERM on, and the supervisor exits 0 once they have stopped.
    """
    config = server_config(settings)
    host, port = sockets[0].getsockname()[:2]
    # uvicorn's own line, which its bind_socket would have written.
    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on %s (Press CTRL+C to quit)", _url(host, port)
    )
    if config.workers > 1:
        with shared_metrics_dir(), _draining_workers():  # one scrape counts every worker
            _Supervisor(config, sockets=sockets).run()
        return 0
    server = _Server(config, config.drain_grace_s)
    terminated: list[int] = []

    def _after_drain(sig: int, _frame: FrameType | None) -> None:
        terminated.append(sig)  # uvicorn restores this handler and re-raises into it

    stops = (signal.SIGTERM, signal.SIGINT)  # both begin the drain (`handle_exit`)
    previous = {sig: signal.signal(sig, _after_drain) for sig in stops}
    try:
        server.run(sockets=sockets)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        return STARTUP_FAILURE
    if terminated and (not server.drained or server.cut_requests):
        return 128 + terminated[0]
    return 0


def bind_listeners(settings: Settings) -> list[socket.socket]:
    """The teams' listener, then the admin plane's (`--admin-port`): bound, not yet
    listening, so `serve` knows it can serve before it writes anything (the database,
    the issuer it serves as). SettingsError naming the setting when one cannot be bound:
    a name that does not resolve, an address not on this host, a port in use."""
    sockets = [_bind(settings.host, settings.port, "GATEWAY_PORT (--port)")]
    if settings.admin_port is not None:
        try:
            sockets.append(
                _bind(settings.host, settings.admin_port, "GATEWAY_ADMIN_PORT (--admin-port)")
            )
        except SettingsError:
            sockets[0].close()
            raise
    return sockets


def local_url(sock: socket.socket) -> str:
    """Where a client on this host reaches a bound listener: a wildcard address as the
    loopback one (`gateway usage` asks the server there)."""
    host, port = sock.getsockname()[:2]
    loopback = {"0.0.0.0": "127.0.0.1", "::": "::1"}
    return _url(loopback.get(host, host), port)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _bind(host: str, port: int, port_setting: str) -> socket.socket:
    """A socket bound as uvicorn's `Config.bind_socket` binds one (SO_REUSEADDR,
    inheritable by `--workers`), with a refusal that names the setting to fix."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))  # a name is resolved here (getaddrinfo)
    except OSError as error:
        sock.close()
        raise SettingsError(_bind_problem(host, port, port_setting, error)) from None
    sock.set_inheritable(True)
    return sock


def _bind_problem(host: str, port: int, port_setting: str, error: OSError) -> str:
    """Why `host`:`port` cannot be listened on, naming the setting that says so."""
    reason = error.strerror or str(error)
    if isinstance(error, socket.gaierror):
        return f"GATEWAY_HOST (--host): cannot resolve {host!r} to an address ({reason})"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"GATEWAY_HOST (--host): {host} is not an address of this host ({reason})"
    if error.errno == errno.EADDRINUSE:
        return f"{port_setting}: port {port} on {host} is in use ({reason})"
    if error.errno == errno.EACCES:
        return f"{port_setting}: no permission to listen on port {port} ({reason})"
    return f"GATEWAY_HOST (--host), {port_setting}: cannot listen on {host}:{port} ({reason})"
