"""Running the real `gateway` command in tests: where it is, and a free port for it."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

GATEWAY = str(Path(sys.executable).with_name("gateway"))


def free_port() -> int:
    """A loopback port free right now (the gateway binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
