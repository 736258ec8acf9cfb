"""Running the real `gateway` command in tests: where it is, and a free port for it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

GATEWAY = str(Path(sys.executable).with_name("gateway"))


def free_port() -> int:
    """A loopback port free right now (the gateway binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_gateway(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`gateway ARGS` to completion, as an operator runs it: text output captured."""
    return subprocess.run(
        [GATEWAY, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
