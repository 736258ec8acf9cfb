"""The Redis limits backend: exact across processes and hosts.

One round trip reserves (the RESERVE script, registered once and called by its
SHA, its numbers packed into one argument); settles are queued and sent in the
background by one drainer, as many per pipelined round trip as have gathered (the
response path never waits for them). Every key carries the team's hash tag and a
TTL. Any Redis failure is BackendUnavailable: the service decides, by policy,
whether that refuses (closed) or serves unchecked (open).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from gateway.limits.answers import (
    BudgetRefusal,
    ConcurrencyRefusal,
    RateRefusal,
    RateViews,
    tightest,
)
from gateway.limits.backend import BackendUnavailable, Decision, Hold, NeedsSeed, Snapshot
from gateway.limits.budget import Counter, Verdict
from gateway.limits.gcra import Bucket, state_of
from gateway.limits.memory import KEEP_AFTER_PERIOD_MS
from gateway.limits.plan import Actual, BudgetRule, Plan
from gateway.limits.redis_calls import (
    ScriptCall,
    ShapeCalls,
    reserve_values,
    settle_values,
    team_prefix,
)
from gateway.limits.redis_scripts import RESERVE, SEED, SETTLE, SWEEP
from gateway.limits.resp import Command, NoScript, RespConnection, RespError

log = logging.getLogger("gateway.limits")
# A limits check must fail fast: a dead Redis answers "closed" or "open" within this.
REDIS_TIMEOUT_S = 0.5
SETTLE_DRAIN_S = 2.0
# A settle waits this long for the next reserve to ride along with (one write, one round
# trip for both: at low concurrency, half the round trips); the drainer sends it then.
SETTLE_DELAY_S = 0.002
RIDE_ALONG_MAX = 4  # settles one reserve carries: Redis runs them before it answers


# A settle waiting to be sent: its shape's SETTLE call and its ARGV.
Settle = tuple[ScriptCall, list[str]]


class RedisBackend:
    def __init__(self, client: aioredis.Redis, fast: RespConnection | None = None) -> None:
        self._redis = client
        self._fast = fast  # the scripts' calls go here when the URL allows (resp.py)
        self._reserve = client.register_script(RESERVE)
        self._settle = client.register_script(SETTLE)
        self._seed = client.register_script(SEED)
        self._sweep = client.register_script(SWEEP)
        # Each shape's RESERVE and SETTLE calls less the request's numbers, made once.
        self._calls = ShapeCalls(self._reserve.sha, self._settle.sha)
        # Settles wait here for the drainer, which sends what has gathered as one
        # pipeline (one write, one read) while the responses go out: no task per request.
        self._queue: list[Settle] = []
        self._queued_since = 0.0  # the loop's time when the queue's oldest settle came
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._drainer: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._sending = 0  # batches on their way (the drainer's, a reserve's ride-alongs)
        self._closing = False
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
        return cls(client, RespConnection.from_url(url, timeout_s=REDIS_TIMEOUT_S))

    def reserve_now(self, plan: Plan, hold_id: str, now_ms: int) -> None:
        return None  # Redis decides: always one round trip (try_reserve)

    async def try_reserve(self, plan: Plan, hold_id: str, now_ms: int) -> Decision:
        reserve = self._calls.of(plan.shape)[0]
        lease_end = now_ms + plan.lease_ms
        args = reserve.args(hold_id, reserve_values(plan, now_ms, lease_end))
        fast = self._fast
        if fast is None:
            reply = await self._call(self._reserve, reserve.keys, args)
            return decode_reserve(plan, hold_id, lease_end, reply)
        # The settles waiting in the queue ride ahead of the reserve, in the same write.
        # The settle timer stays: when it fires it finds the queue empty (or holding the
        # settles that came since, none of them older than its delay). One timer per
        # delay, not one made and cancelled per request.
        batch: list[Settle] = []
        if len(self._queue) <= RIDE_ALONG_MAX:
            batch, self._queue = self._queue, batch
        commands = self._settle_commands(batch)
        commands.append(reserve.command(args))
        self._sending += 1
        try:
            replies = await fast.call_many(commands)
        except (RespError, OSError) as error:
            if batch:
                self._lost(len(batch), error)
            raise BackendUnavailable(f"Redis: {_why(error)}") from error
        finally:
            self._sending -= 1
            self._maybe_idle()
        reply = replies.pop()
        again = self._accounted(batch, replies)
        if again:
            await self._send_again(again)
        if isinstance(reply, NoScript):  # Redis forgot the script (none of it ran): again
            reply = await self._call(self._reserve, reserve.keys, args, reserve, forgotten=True)
        elif isinstance(reply, RespError):
            raise BackendUnavailable(f"Redis: {_why(reply)}")
        return decode_reserve(plan, hold_id, lease_end, reply)

    async def seed(self, team: str, seeds: tuple[tuple[BudgetRule, int], ...]) -> None:
        if not seeds:
            return
        p = team_prefix(team)
        args: list[Any] = []
        for check, used in seeds:
            args += [used, check.resets_ms + KEEP_AFTER_PERIOD_MS]
        await self._call(self._seed, [p + c.key for c, _ in seeds], args)

    def settle(self, hold: Hold, actual: Actual | None) -> None:
        if not hold.is_checked:
            return
        loop = asyncio.get_running_loop()
        if not self._queue:
            self._queued_since = loop.time()
        self._queue.append(self._settle_of(hold, actual))
        self._idle.clear()
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        if self._timer is None:
            self._timer = loop.call_later(SETTLE_DELAY_S, self._send_queued)

    def _send_queued(self) -> None:
        """The settle timer: send the queue once its oldest settle has waited the delay.
        Younger settles wait on (a reserve may still carry them): one timer per delay
        at low concurrency, not a round trip of their own every delay."""
        self._timer = None
        if not self._queue:  # a reserve carried them all already
            return
        loop = asyncio.get_running_loop()
        due = self._queued_since + SETTLE_DELAY_S
        if loop.time() < due:
            self._timer = loop.call_at(due, self._send_queued)
        else:
            self._wake.set()

    def _maybe_idle(self) -> None:
        if not self._queue and not self._sending:
            self._idle.set()

    def _settle_of(self, hold: Hold, actual: Actual | None) -> Settle:
        plan = hold.plan
        settle = self._calls.of(plan.shape)[1]
        return settle, settle.args(hold.id, settle_values(plan, actual))

    async def _settle_now(self, hold: Hold, actual: Actual | None) -> None:
        """Settle at once and wait for Redis to take it (the equivalence test's path)."""
        await self._send_settles([self._settle_of(hold, actual)])

    async def flush(self) -> None:
        """Send what is queued now; wait until every settle has been sent (and answered,
        or lost)."""
        self._wake.set()
        await self._idle.wait()

    async def _drain(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                self._sending += 1
                try:
                    await self._send_settles(batch)
                finally:
                    self._sending -= 1
            self._maybe_idle()
            if self._closing:
                return

    def _accounted(self, batch: list[Settle], replies: list[Any]) -> list[Settle]:
        """The settles' replies: failures are counted lost, except a refusal for not
        knowing the script (a restarted Redis: none of it ran); those settles are
        returned, to be sent again. No await: a batch whose settles all landed (the
        usual) costs a loop, not a coroutine."""
        again: list[Settle] = []
        errors = []
        for settle, reply in zip(batch, replies, strict=False):
            if isinstance(reply, NoScriptError | NoScript):
                again.append(settle)
            elif isinstance(reply, Exception):
                errors.append(reply)
        if errors:
            self._lost(len(errors), errors[0])
        return again

    async def _send_again(self, again: list[Settle]) -> None:
        """Settles Redis refused for not knowing the script (none of them ran): each once
        more, the script loaded again first; those that still do not land are counted lost."""
        for sent, (call, args) in enumerate(again):
            try:
                await self._evalsha(self._settle, call.keys, args, call, forgotten=sent == 0)
            except (RedisError, RespError, OSError) as error:
                self._lost(len(again) - sent, error)
                return

    def _lost(self, count: int, error: Exception) -> None:
        self.lost_settles += count
        log.warning(
            "limits settle lost: Redis unreachable (the reservation frees at its lease end)",
            extra={"fields": {"settles": count, "error": _why(error)}},
        )

    def _settle_commands(self, batch: list[Settle]) -> list[Command]:
        return [call.command(args) for call, args in batch]

    async def _send_settles(self, batch: list[Settle]) -> None:
        try:
            if len(batch) == 1:
                call, args = batch[0]
                await self._evalsha(self._settle, call.keys, args, call)
                return
            if self._fast is not None:
                replies = await self._fast.call_many(self._settle_commands(batch))
            else:
                sha = self._settle.sha
                async with self._redis.pipeline(transaction=False) as pipe:
                    for call, args in batch:
                        pipe.execute_command("EVALSHA", sha, len(call.keys), *call.keys, *args)
                    replies = await pipe.execute(raise_on_error=False)
        except (RedisError, RespError, OSError) as error:
            self._lost(len(batch), error)
            return
        again = self._accounted(batch, replies)
        if again:
            await self._send_again(again)

    async def snapshot(self, plan: Plan, now_ms: int) -> Snapshot:
        p = team_prefix(plan.team)
        if plan.budgets or plan.concurrency:  # lapsed holds still count there (not on rates)
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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        drainer = self._drainer
        if drainer is not None and not drainer.done():  # queued settles get a moment to land
            self._closing = True
            self._wake.set()
            await asyncio.wait([drainer], timeout=SETTLE_DRAIN_S)
            drainer.cancel()
        if self._fast is not None:
            await self._fast.close()
        await self._redis.aclose()

    async def _call(
        self,
        script: AsyncScript,
        keys: list[str],
        args: list[Any],
        call: ScriptCall | None = None,
        *,
        forgotten: bool = False,
    ) -> Any:
        try:
            return await self._evalsha(script, keys, args, call, forgotten=forgotten)
        except (RedisError, RespError, OSError) as error:
            raise BackendUnavailable(f"Redis: {_why(error)}") from error

    async def _evalsha(
        self,
        script: AsyncScript,
        keys: list[str],
        args: list[Any],
        call: ScriptCall | None = None,
        *,
        forgotten: bool = False,
    ) -> Any:
        """EVALSHA on the fast connection (framed by `call`, a shape's call made once,
        when given), else through redis-py. A script Redis forgot (it restarted or was
        flushed) is loaded again, once, the same text and sha: when the call is refused
        for it, or first, when Redis has just refused it already (`forgotten`)."""
        fast = self._fast
        if fast is None:
            return await script(keys=keys, args=args)
        command: Command = (
            ("EVALSHA", script.sha, len(keys), *keys, *args) if call is None else call.command(args)
        )
        if not forgotten:
            try:
                return await fast.call(command)
            except NoScript:
                pass
        script.sha = await self._redis.script_load(script.script)
        return await fast.call(command)


def _why(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def decode_reserve(plan: Plan, hold_id: str, lease_end: int, reply: list[Any]) -> Decision:
    """The RESERVE script's answer → the same values the in-process backend returns."""
    status = int(reply[0])
    if status == 0:
        requests, tokens = _views(plan, reply, 1)
        return Hold(hold_id, plan, lease_end, requests, tokens)
    if status == 4:
        return NeedsSeed(tuple(plan.budgets[int(i) - 1] for i in reply[1:]))
    check_index = int(reply[1]) - 1
    if status == 1:
        verdict = Verdict.TOO_LARGE if int(reply[2]) == 2 else Verdict.EXHAUSTED
        counter = Counter(int(reply[3]), int(reply[4]))
        rule = plan.budgets[check_index]
        views = _views(plan, reply, 5)
        return BudgetRefusal(rule, plan.amount(rule), verdict, counter, views)
    if status == 2:
        return ConcurrencyRefusal(
            plan.concurrency[check_index], int(reply[2]), _views(plan, reply, 3)
        )
    rate = plan.rates[check_index]
    wait, remaining, reset_ms = int(reply[2]), int(reply[3]), int(reply[4])
    return RateRefusal(rate, plan.amount(rate), wait, remaining, reset_ms, _views(plan, reply, 5))


def _views(plan: Plan, reply: list[Any], start: int) -> RateViews:
    """The tightest rate key of each kind, from the (remaining, reset_ms) per rate that
    the reply holds from `start` on."""
    return tightest(
        (r.kind, r.limit, int(reply[start + 2 * i]), int(reply[start + 1 + 2 * i]))
        for i, r in enumerate(plan.shape.rates)
    )
