"""Random hex ids without a system call each.

Every request takes two 128-bit ids (its x-request-id when the caller sends none, and
the ledger's idempotency key); os.urandom is a getrandom call each time, ~0.5 µs warm
and ~2 µs on a core that just woke. Here they are cut from the kernel's random bytes
read 4 KiB at a time: one call per 128 ids, the same bytes otherwise. A forked child
starts with none of its parent's, so no two processes hand out the same id.
"""

from __future__ import annotations

import os
import threading
from typing import Final

BUFFER_BYTES: Final = 4096


class RandomHex:
    """Hex strings of fresh random bytes; safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hex = ""  # the unused part of the buffer starts at _at
        self._at = 0

    def take(self, nbytes: int) -> str:
        """`nbytes` random bytes as 2 * `nbytes` hex digits, never handed out before."""
        width = 2 * nbytes
        with self._lock:
            at, held = self._at, self._hex
            if at + width > len(held):
                held, at = os.urandom(max(BUFFER_BYTES, nbytes)).hex(), 0
                self._hex = held
            self._at = at + width
        return held[at : at + width]

    def forget(self) -> None:
        """Drop the buffer (a forked child: the parent hands out the same bytes). A new
        lock too: another thread may have held the old one at the fork."""
        self._lock = threading.Lock()
        self._hex, self._at = "", 0


_SOURCE: Final = RandomHex()
os.register_at_fork(after_in_child=_SOURCE.forget)


def random_hex(nbytes: int = 16) -> str:
    """`nbytes` (default 16: 128 bits) of the kernel's random bytes, as hex."""
    return _SOURCE.take(nbytes)
