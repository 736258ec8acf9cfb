"""How fast a replica picks up a new policy version: the 0.5 s poll vs LISTEN/NOTIFY.

    .venv/bin/python bench/policy_sync.py [POSTGRES_URL]

Measures, on SQLite and PostgreSQL: the cost of one poll (`SELECT max(version)`),
and the lag from a version's commit (in one engine, as another replica would)
to this process's `PolicyStore` holding it (`PolicySync`, compile and swap
included). On PostgreSQL it also measures LISTEN/NOTIFY delivery, the
alternative. The numbers are quoted in gateway/policy/sync.py's docstring.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from gateway.db import create_engine, migrate
from gateway.policy.service import PolicyService
from gateway.policy.store import PolicyStore
from gateway.policy.sync import PolicySync
from gateway.providers.registry import ProviderSet

BUNDLE = {
    "providers": {"demo": {"type": "mock"}},
    "models": {"m": {"deployments": [{"provider": "demo", "model": "x"}]}},
    "teams": {"t0": {"models": ["m"]}},
}
ROUNDS = 20


def _summary(name: str, values: list[float]) -> None:
    values = sorted(values)
    print(
        f"{name:<34} mean {statistics.mean(values) * 1000:8.2f} ms  "
        f"p50 {values[len(values) // 2] * 1000:8.2f} ms  max {values[-1] * 1000:8.2f} ms"
    )


async def poll_cost(url: str, label: str) -> None:
    engine = create_engine(url)
    service = PolicyService(engine, os.environ)
    try:
        await service.newest_number()
        timings = []
        for _ in range(200):
            started = time.perf_counter()
            await service.newest_number()
            timings.append(time.perf_counter() - started)
        _summary(f"{label}: one poll", timings)
    finally:
        await engine.dispose()


async def pickup_lag(url: str, label: str) -> None:
    """Another engine writes a version; how long until this process's store has it."""
    writer_engine, reader_engine = create_engine(url), create_engine(url)
    writer = PolicyService(writer_engine, os.environ)
    reader = PolicyService(reader_engine, os.environ)
    try:
        first = await writer.apply(BUNDLE, author="bench", reason="", base_version=None)
        base = first.version.version
        store = PolicyStore(reader.compile(first.version), base)
        providers = ProviderSet(store.current().providers)
        sync = PolicySync(reader, store, providers)
        task = asyncio.create_task(sync.run())
        lags = []
        for i in range(ROUNDS):
            await asyncio.sleep(0.1 + (i % 7) * 0.07)  # land at varied points of the poll cycle
            bundle = {**BUNDLE, "teams": {f"t{i + 1}": {"models": ["m"]}}}
            applied = await writer.apply(bundle, author="bench", reason="", base_version=base)
            base = applied.version.version
            committed = time.perf_counter()
            # Busy-wait on purpose: we measure when the store changes, not signal it.
            while store.version != base:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - committed)
        task.cancel()
        await sync.close()
        await providers.close()
        _summary(f"{label}: commit → enforced (poll)", lags)
    finally:
        await writer_engine.dispose()
        await reader_engine.dispose()


async def notify_latency(url: str) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    listener, sender = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    received: asyncio.Queue[float] = asyncio.Queue()
    await listener.add_listener("policy", lambda *_: received.put_nowait(time.perf_counter()))
    lags = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        await sender.execute("NOTIFY policy, 'v'")
        lags.append(await received.get() - started)
    await listener.close()
    await sender.close()
    _summary("postgres: NOTIFY → listener", lags)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        await migrate(sqlite)
        await poll_cost(sqlite, "sqlite")
        await pickup_lag(sqlite, "sqlite")
    if len(sys.argv) > 1:
        postgres = sys.argv[1]
        await migrate(postgres)
        await poll_cost(postgres, "postgres")
        await pickup_lag(postgres, "postgres")
        await notify_latency(postgres)


if __name__ == "__main__":
    asyncio.run(main())
