"""The `gateway` command's entry point: before anything else is imported (the CLI's
imports take most of a second), `serve` ignores SIGHUP, whose default action ends a
process. A logrotate's postrotate HUP landing while a server starts ended it (probe
p7, exit 129); `serve` keeps it ignored until the app reopens its log on it."""

from __future__ import annotations

import signal
import sys


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from gateway.cli import main as cli_main

    cli_main()
