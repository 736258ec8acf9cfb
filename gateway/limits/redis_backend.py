"""The Redis limits backend: exact across processes and hosts.

One round trip reserves (the RESERVE script, registered once and called by its
SHA); settling is one more, in the background after the answer went out (the
response path never waits for it). Every key carries the team's hash tag and a
TTL. Any Redis failure is BackendUnavailable: the service decides, by policy,
whether that refuses (closed) or serves unchecked (open).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from gateway.limits.answers import (
    BudgetRefusal,
    ConcurrencyRefusal,
    RateRefusal,
    RateView,
    Refusal,
)
from gateway.limits.backend import BackendUnavailable, Hold, NeedsSeed, Snapshot
from gateway.limits.budget import Counter, Verdict
from gateway.limits.gcra import Bucket, state_of
from gateway.limits.memory import KEEP_AFTER_PERIOD_MS
from gateway.limits.plan import Actual, BudgetCheck, Plan, RateKind
from gateway.limits.redis_scripts import RESERVE, SEED, SETTLE, SWEEP

log = logging.getLogger("gateway.limits")
# A limits check must fail fast: a dead Redis answers "closed" or "open" within this.
REDIS_TIMEOUT_S = 0.5
SETTLE_DRAIN_S = 2.0


def team_prefix(team: str) -> str:
    """All of one team's keys in one hash slot (Redis Cluster): the `{team}` tag."""
    return f"gw:{{{team}}}:"


class RedisBackend:
    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client
        self._reserve = client.register_script(RESERVE)
        self._settle = client.register_script(SETTLE)
        self._seed = client.register_script(SEED)
        self._sweep = client.register_script(SWEEP)
        self._pending: set[asyncio.Task[None]] = set()
        self.lost_settles = 0  # settles Redis never took (their leases free them)

    @classmethod
    def from_url(cls, url: str) -> RedisBackend:
        client = aioredis.Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
        )
        return cls(client)

    async def try_reserve(
        self, plan: Plan, hold_id: str, now_ms: int
    ) -> Hold | Refusal | NeedsSeed:
        p = team_prefix(plan.team)
        keys = [p + "holds", p + "exp"]
        keys += [p + c.key for c in plan.budgets]
        keys += [p + r.key for r in plan.rates]
        keys += [p + c.key for c in plan.concurrency]
        lease_end = now_ms + plan.lease_ms
        args: list[Any] = [
            hold_id,
            now_ms,
            lease_end,
            len(plan.budgets),
            len(plan.rates),
            len(plan.concurrency),
        ]
        for b in plan.budgets:
            args += [b.limit, b.amount, b.resets_ms + KEEP_AFTER_PERIOD_MS]
        for r in plan.rates:
            args += [r.limit, r.amount]
        args += [c.limit for c in plan.concurrency]
        reply = await self._call(self._reserve, keys, args)
        return decode_reserve(plan, hold_id, lease_end, reply)

    async def seed(self, team: str, seeds: tuple[tuple[BudgetCheck, int], ...]) -> None:
        if not seeds:
            return
        p = team_prefix(team)
        args: list[Any] = []
        for check, used in seeds:
            args += [used, check.resets_ms + KEEP_AFTER_PERIOD_MS]
        await self._call(self._seed, [p + c.key for c, _ in seeds], args)

    def settle(self, hold: Hold, actual: Actual | None, now_ms: int) -> None:
        if not hold.is_checked:
            return
        task = asyncio.get_running_loop().create_task(self._settle_now(hold, actual))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _settle_now(self, hold: Hold, actual: Actual | None) -> None:
        plan = hold.plan
        p = team_prefix(plan.team)
        tpm = [r for r in plan.rates if r.kind is RateKind.TOKENS]
        keys = (
            [p + "holds", p + "exp"] + [p + b.key for b in plan.budgets] + [p + r.key for r in tpm]
        )
        args: list[Any] = [hold.id, len(plan.budgets), len(tpm)]
        for b in plan.budgets:
            args += [-1 if actual is None else b.actual(actual), b.resets_ms + KEEP_AFTER_PERIOD_MS]
        true_tokens = 0 if actual is None else actual.tokens
        args += [true_tokens - r.amount for r in tpm]
        try:
            await self._call(self._settle, keys, args)
        except BackendUnavailable as error:
            self.lost_settles += 1
            log.warning(
                "limits settle lost: Redis unreachable (the reservation frees at its lease end)",
                extra={"fields": {"team": plan.team, "error": str(error)}},
            )

    async def snapshot(self, plan: Plan, now_ms: int) -> Snapshot:
        p = team_prefix(plan.team)
        await self._call(self._sweep, [p + "holds", p + "exp"], [now_ms])
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for b in plan.budgets:
                    pipe.hmget(p + b.key, ["u", "r", "s"])
                for r in plan.rates:
                    pipe.hmget(p + r.key, ["s", "l"])
                for c in plan.concurrency:
                    pipe.zcount(p + c.key, now_ms + 1, "+inf")
                replies = await pipe.execute()
        except (RedisError, OSError) as error:
            raise BackendUnavailable(f"Redis: {type(error).__name__}") from error
        nb, nr = len(plan.budgets), len(plan.rates)
        budgets = tuple(
            None if s is None else Counter(int(u or 0), int(r or 0)) for u, r, s in replies[:nb]
        )
        rates = tuple(
            state_of(Bucket(int(s or 0), int(level or 0)), now_ms, r.limit)
            for (s, level), r in zip(replies[nb : nb + nr], plan.rates, strict=True)
        )
        return Snapshot(budgets, rates, tuple(int(n) for n in replies[nb + nr :]))

    async def health(self) -> str:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as error:
            return f"error: Redis unreachable ({type(error).__name__})"
        return "ok"

    async def close(self) -> None:
        if self._pending:  # settles still in the air get a moment to land
            await asyncio.wait(list(self._pending), timeout=SETTLE_DRAIN_S)
        await self._redis.aclose()

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError) as error:
            raise BackendUnavailable(f"Redis: {type(error).__name__}: {error}") from error


def decode_reserve(
    plan: Plan, hold_id: str, lease_end: int, reply: list[Any]
) -> Hold | Refusal | NeedsSeed:
    """The RESERVE script's answer → the same values the in-process backend returns."""
    status = int(reply[0])
    if status == 0:
        views = tuple(
            RateView(r, int(reply[1 + 2 * i]), int(reply[2 + 2 * i]))
            for i, r in enumerate(plan.rates)
        )
        return Hold(hold_id, plan, views, lease_end)
    if status == 4:
        return NeedsSeed(tuple(plan.budgets[int(i) - 1] for i in reply[1:]))
    check_index = int(reply[1]) - 1
    if status == 1:
        verdict = Verdict.TOO_LARGE if int(reply[2]) == 2 else Verdict.EXHAUSTED
        counter = Counter(int(reply[3]), int(reply[4]))
        return BudgetRefusal(plan.budgets[check_index], verdict, counter)
    if status == 2:
        return ConcurrencyRefusal(plan.concurrency[check_index], int(reply[2]))
    rate = plan.rates[check_index]
    return RateRefusal(rate, int(reply[2]), int(reply[3]), int(reply[4]))
