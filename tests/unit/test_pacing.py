"""Worker threads pace long GIL-releasing work so the event loop gets the GIL (gateway/pacing.py)."""

from __future__ import annotations

import asyncio
import gc
import threading
import time

import pytest

from gateway import pacing
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import MatchBudget, Rule, RuleSource, Scanner


class FakeClock:
    """perf_counter and sleep on a clock that moves only when told (or slept)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(pacing.time, "perf_counter", fake.perf_counter)
    monkeypatch.setattr(pacing.time, "sleep", fake.sleep)
    return fake


def in_thread(fn):
    """Run `fn` on a fresh thread (no event loop, its own due time); return its result."""
    out = []
    worker = threading.Thread(target=lambda: out.append(fn()))
    worker.start()
    worker.join()
    return out[0]


def test_a_worker_thread_pauses_once_per_slice_of_work(clock) -> None:
    def work() -> list[float]:
        pacing.pace()  # the thread's first call: a pause is due
        assert clock.sleeps == [pacing.PAUSE_S]
        for _ in range(100):  # within one slice: no more pauses
            clock.now += pacing.SLICE_S / 200
            pacing.pace()
        assert len(clock.sleeps) == 1
        clock.now += pacing.SLICE_S  # a slice of work later: one more
        pacing.pace()
        pacing.pace()
        return clock.sleeps

    assert in_thread(work) == [pacing.PAUSE_S, pacing.PAUSE_S]


def test_the_event_loop_thread_never_pauses(clock) -> None:
    async def work() -> None:
        for _ in range(50):
            clock.now += pacing.SLICE_S
            pacing.pace()

    asyncio.run(work())
    assert clock.sleeps == []
    assert pacing.on_event_loop() is False  # outside asyncio.run: no loop here


def test_each_thread_keeps_its_own_due_time(clock) -> None:
    in_thread(pacing.pace)
    in_thread(pacing.pace)  # another thread: its first call pauses too
    assert clock.sleeps == [pacing.PAUSE_S, pacing.PAUSE_S]


def dense_scanner() -> Scanner:
    rule = Rule("ip_address", DetectorKind.IP_ADDRESS, GuardAction.REDACT)
    return Scanner([RuleSource(rule)])


def test_a_budgeted_scan_on_a_thread_paces_itself_and_finds_the_same(monkeypatch) -> None:
    """Pacing changes when the scan runs, never what it finds."""
    calls = []
    real = pacing.pace
    monkeypatch.setattr("gateway.guardrails.scanner.pace", lambda: calls.append(1) or real())
    text = "10.0.0.1 " * 1000
    scanner = dense_scanner()
    paced = in_thread(lambda: scanner.find(text, 0, MatchBudget(10_000)))
    assert len(calls) >= 1000 // 64  # every 64 matches, and once for the text
    assert paced == scanner.find(text)  # no budget: no pacing, the same findings
    assert len(paced) == 1000


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while await reader.read(100):
            writer.write(b"pong")
            await writer.drain()
    finally:
        writer.close()
        await writer.wait_closed()


def test_a_dense_scan_on_a_thread_leaves_the_loop_its_turns() -> None:
    """The stall itself: while a thread looks at 100,000 matches, the event loop's round
    trips over a socket (each syscall gives the GIL up and must win it back) keep coming
    back on time. Without pacing the worst round here took ~0.3 s of 2, with it ~0.02."""
    text = "10.0.0.1 " * 100_000
    scanner = dense_scanner()

    async def main() -> tuple[float, float]:
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.perf_counter()
        scan = asyncio.get_running_loop().run_in_executor(
            None, lambda: scanner.find(text, 0, MatchBudget(100_000))
        )
        worst = 0.0
        while not scan.done():
            before = time.perf_counter()
            writer.write(b"ping")
            await writer.drain()
            await reader.read(100)
            await asyncio.sleep(0.005)
            worst = max(worst, time.perf_counter() - before)
        total = time.perf_counter() - started
        assert len(await scan) == 100_000
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.05)  # the server's side sees the end and closes too
        server.close()
        await server.wait_closed()
        return worst, total

    gc.collect()
    gc.disable()  # a full collection of this process holds the GIL ~0.1 s: not the stall
    try:
        worst, total = asyncio.run(main())
    finally:
        gc.enable()
    assert worst < max(0.1, total / 20), (worst, total)
