"""The background reload shared by revoked clients and signing keys (gateway/auth/periodic.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.auth.periodic import PeriodicReload


class FlakyReload:
    """A reload that fails while `failing` is set; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.failing = False

    async def __call__(self) -> None:
        self.calls += 1
        if self.failing:
            raise ConnectionRefusedError("postgresql://user:hunter2@db/gateway")


async def test_start_loads_once_before_returning_and_stop_ends_the_loop() -> None:
    reload = FlakyReload()
    loop = PeriodicReload(reload, interval_s=0.01, what="things")
    await loop.start()
    assert reload.calls == 1
    await asyncio.sleep(0.1)
    await loop.stop()
    seen = reload.calls
    assert seen > 2
    await asyncio.sleep(0.05)
    assert reload.calls == seen
    await loop.stop()  # idempotent


async def test_a_failing_first_load_reaches_the_caller_and_starts_no_task() -> None:
    reload = FlakyReload()
    reload.failing = True
    loop = PeriodicReload(reload, interval_s=0.01, what="things")
    with pytest.raises(ConnectionRefusedError):
        await loop.start()
    await asyncio.sleep(0.05)
    assert reload.calls == 1


async def test_an_outage_is_logged_once_by_kind_and_its_end_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reload = FlakyReload()
    loop = PeriodicReload(reload, interval_s=60, what="signing keys")
    caplog.set_level(logging.INFO, logger="gateway.auth.periodic")
    reload.failing = True
    for _ in range(3):
        await loop.reload_once()  # never raises
    reload.failing = False
    await loop.reload_once()
    await loop.reload_once()
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert messages == [
        (logging.WARNING, "cannot reload the signing keys: ConnectionRefusedError"),
        (logging.INFO, "signing keys reloaded again"),
    ]
    assert "hunter2" not in caplog.text


async def test_a_second_outage_is_logged_again() -> None:
    reload = FlakyReload()
    loop = PeriodicReload(reload, interval_s=60, what="x")
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("gateway.auth.periodic")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        for failing in (True, True, False, True, False):
            reload.failing = failing
            await loop.reload_once()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert records == [
        "cannot reload the x: ConnectionRefusedError",
        "x reloaded again",
        "cannot reload the x: ConnectionRefusedError",
        "x reloaded again",
    ]
