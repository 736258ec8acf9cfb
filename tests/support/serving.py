"""`gateway serve` as a real process on a free port, for tests that need the whole server
(uvicorn's HTTP layer, signals, the database file on disk).

    with serve_process(tmp_path, {"GATEWAY_CLIENT_TIMEOUT_S": "1"}) as server:
        httpx.get(f"{server.origin}/healthz")
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx

from tests.support.processes import GATEWAY, free_port


@dataclass
class ServeProcess:
    origin: str
    port: int
    process: subprocess.Popen[bytes]
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@contextmanager
def serve_process(
    tmp_path: Path,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
    *,
    base_env: Mapping[str, str] | None = None,
    port_as_flag: bool = False,
    ignore_sigint: bool = False,
) -> Iterator[ServeProcess]:
    """`gateway serve` in `tmp_path` (its policies/, else the example; SQLite there), up
    and healthy. `env` goes over `base_env` (default: this process's environment); the
    free port is given as GATEWAY_PORT, or as `--port` with `port_as_flag`. Output goes
    to files: a log nobody reads must not fill a pipe and stall the server."""
    port = free_port()
    full_env = dict(os.environ if base_env is None else base_env)
    if port_as_flag:
        args = ("--port", str(port), *args)
    else:
        full_env["GATEWAY_PORT"] = str(port)
    full_env.update(env or {})
    stderr_path = tmp_path / "serve.stderr"
    with (tmp_path / "serve.stdout").open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [GATEWAY, "serve", *args],
            cwd=tmp_path,
            env=full_env,
            stdout=out,
            stderr=err,
            # As a shell starts a background job (`gateway serve &`): SIGINT ignored.
            preexec_fn=_ignore_sigint if ignore_sigint else None,
        )
    server = ServeProcess(f"http://127.0.0.1:{port}", port, process, stderr_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, server.stderr()
            assert time.monotonic() < deadline, "gateway did not come up"
            try:
                if httpx.get(f"{server.origin}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(60)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
