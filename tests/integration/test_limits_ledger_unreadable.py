"""Counters that need their rebuild while the database is down: `closed` refuses with a
503 that names the database (there is no limits store in process), `open` serves."""

from __future__ import annotations

import time

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.limits.errors import LimitsUnavailable
from gateway.limits.memory import MemoryBackend
from gateway.limits.plan import Estimate, build_plan
from gateway.limits.rebuild import ledger_reader
from gateway.limits.service import Limits
from gateway.policy.compiled import Budget, BudgetPeriod, TeamRules
from gateway.policy.schema import BackendErrorMode
from tests.support.redis_server import free_port


async def test_a_rebuild_the_database_cannot_serve_names_the_database() -> None:
    """The in-process backend after a restart, PostgreSQL refusing connections: before,
    the 503 said 'its limits store is unreachable', sending operators after a Redis
    they do not run."""
    nobody = f"postgresql+asyncpg://postgres:postgres@127.0.0.1:{free_port()}/gateway"
    engine = create_async_engine(nobody, connect_args={"timeout": 5})
    limits = Limits(MemoryBackend(), ledger_reader(engine))
    team = TeamRules("rebuilt", True, frozenset(), budgets=(Budget(BudgetPeriod.DAY, 1000, None),))
    plan = build_plan(team, "u", Estimate(10, 0), int(time.time() * 1000))
    try:
        with pytest.raises(LimitsUnavailable) as refused:
            await limits.reserve(plan, BackendErrorMode.CLOSED)
        assert (refused.value.status, refused.value.code) == (503, "limits_unavailable")
        assert "database" in str(refused.value) and "limits store" not in str(refused.value)
        served = await limits.reserve(plan, BackendErrorMode.OPEN)
        assert not served.is_checked and limits.unchecked == 1
    finally:
        await limits.close()
        await engine.dispose()
