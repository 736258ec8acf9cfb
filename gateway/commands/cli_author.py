"""Who the audit log (and a policy version) names for a change made from the CLI."""

from __future__ import annotations

import getpass
import os
import socket


def cli_author() -> str:
    """The operating-system user at this host (`root@vm`), the same for every command:
    policy, clients and keys (clients and keys said `cli:root`, probe p7)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. in a bare container
        user = os.environ.get("USER") or "unknown"
    return f"{user}@{socket.gethostname()}"
