"""Letting the event loop have the GIL while a worker thread does long work.

A call that releases the GIL and takes it straight back (each RE2 search) counts
as a GIL switch. CPython asks a running thread to hand the GIL over only when a
waiting thread saw no switch for `sys.getswitchinterval()` (5 ms), so a thread
making thousands of such calls never gets that request: the event loop, back from
a syscall and waiting for the GIL, wins it only by the luck of a race. On a loaded
2-core machine one 11 MB guardrail check (100,000 matches) kept a /healthz round
waiting 1.8 s. So a worker thread making such calls pauses briefly every few
milliseconds, long enough for the woken loop thread to take the GIL; on the event
loop's own thread `pace` never pauses.
"""

from __future__ import annotations

import asyncio
import threading
import time

# Work between pauses, and each pause: at most ~5% of a long task's time.
SLICE_S = 0.002
PAUSE_S = 0.0001

_thread = threading.local()  # `due`: when this thread pauses next (perf_counter time)


def on_event_loop() -> bool:
    """Whether this thread is running an event loop (where a sleep would stall it)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def pace() -> None:
    """Pause PAUSE_S when this thread has worked SLICE_S since its last pause, unless it
    runs the event loop. Call it between GIL-releasing calls (~0.4 µs: call it every so often)."""
    now = time.perf_counter()
    if now < getattr(_thread, "due", 0.0):
        return
    if not on_event_loop():
        time.sleep(PAUSE_S)
        now = time.perf_counter()
    _thread.due = now + SLICE_S
