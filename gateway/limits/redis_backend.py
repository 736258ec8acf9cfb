"""The Redis limits backend: exact across processes and hosts.

One round trip reserves (the RESERVE script, registered once and called by its
SHA, its numbers packed into one argument); settles are queued and sent in the
background by one drainer, as many per pipelined round trip as have gathered (the
response path never waits for them). A settle that frees one of a team's last
concurrency slots is written at once instead (its reply read in the background): the
slot must be free before the client sees its answer's end, since the client's next
request may come the moment it does, to this replica or another. Every key carries
the team's hash tag and a TTL. Any Redis failure is BackendUnavailable: the service
decides, by policy, whether that refuses (closed) or serves unchecked (open).

A request served unchecked still spent: its usage is owed (kept here, bounded) and
charged by the CHARGE script with the next batch that reaches Redis, so a Redis that
comes back with its keys (a healed partition, a paused process) counts the outage. A
restarted Redis, or another one (a promoted replica), is a new generation of keys
(redis_generation.py): rebuilt from the ledger, which holds the outage's requests.
While anything is owed, a task offers it to Redis every OWED_RETRY_S too: a replica
with no traffic of its own pays its debt, not leaving the others to admit against a
short count. One that comes back empty rebuilds its counters from the ledger, which
holds it.

A settle Redis did not take (it was away when the settle was sent) is owed the same
way, as a late settle (CHARGE): once Redis answers it frees the request's hold (its
budget reservation, its concurrency slot) and charges its true usage, exactly once;
without it, the hold would stand until its lease end and the usage never be counted.

A reserve given up on (no reply within the timeout) may still run: a hung Redis (stopped,
not dead) reads it from its socket when it wakes, after the request was served unchecked
or refused. Its hold id is owed to Redis the same way (a CHARGE with its lease end): it
frees that hold, or, arriving first, marks the id so the late reserve takes nothing. It
rides ahead of the next reserve (or usage view), so no decision counts a phantom hold.

A Redis that forgot the scripts (SCRIPT FLUSH; a restart that kept its keys) refuses
their calls with NOSCRIPT, none of them run: each is sent again behind every script
loaded again (on the fast connection at once, resp.py), so a reserve sent after a
settle still runs after it, and finds every script loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import AuthenticationError, NoScriptError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.causes import error_cause, url_secrets
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
from gateway.limits.plan import Actual, BudgetRule, Plan, Scope, Shape, Unit, key_owner
from gateway.limits.redis_calls import (
    OwedCharge,
    OwedCharges,
    ScriptCall,
    ShapeCalls,
    abandoned_reserve,
    charge_command,
    late_settle,
    owed_charge,
    refused_for_script,
    reserve_values,
    settle_values,
    team_prefix,
)
from gateway.limits.redis_generation import Generation, GenerationChanged
from gateway.limits.redis_scripts import CHARGE, RESERVE, SEED, SETTLE, SWEEP
from gateway.limits.resp import (
    Command,
    NoScript,
    NotSent,
    RespConnection,
    RespError,
    ServerChanged,
    replies,
    why,
)
from gateway.limits.service import Clock, wall_clock_ms
from gateway.redis_client import redis_client

log = logging.getLogger("gateway.limits")
# A limits check must fail fast: a dead Redis answers "closed" or "open" within this.
REDIS_TIMEOUT_S = 0.5
SETTLE_DRAIN_S = 2.0
# A settle waits this long for the next reserve to ride along with (one write, one round
# trip for both: at low concurrency, half the round trips); the drainer sends it then.
SETTLE_DELAY_S = 0.002
RIDE_ALONG_MAX = 4  # settles one reserve carries: Redis runs them before it answers
# A settle whose hold left fewer slots than this free (on the tightest concurrency key)
# is written at once, before the response's end: the team is at or near its limit, and
# the client's next request, sent the moment it has the end (to this replica or any),
# must find the slot free. One with slots to spare waits to ride along (a round trip
# saved: ~50 µs of CPU at concurrency 1); it could matter only if the team filled
# every slot within its 2 ms wait.
SPARE_SLOTS_AT_ONCE = 8
# Charges owed by unchecked requests, kept while Redis is away; beyond, the oldest go
# (counted in lost_charges): an outage must not grow the process without bound.
OWED_KEPT = 100_000
OWED_BATCH = 1_000  # owed charges per round trip once Redis answers (well within its timeout)
OWED_RIDE_ALONG = 16  # owed charges a reserve carries: the first reserve back sees them
OWED_RETRY_S = 1.0  # while charges are owed: how often they are offered to Redis, unasked
# A team's seed marker (SEED sets it) outlives any period's counters: while it stands, a
# missing counter is new. Without it Redis lost the team's keys (or never had them): the
# rebuild first waits this long, for every replica's ledger writer to store its last batch
# (0.2 s apart), so the usage that went with the keys is in the ledger it reads.
SEED_MARKER = "seeded"
SEED_MARKER_KEEP_MS = 40 * 24 * 3_600_000
LOST_ROWS_WAIT_S = 0.5
# How often the generation is asked again on the connections already open: a new
# connection asks at once, but one that stays open would not see a flush that another
# process's reconnection re-recorded, nor a server swapped behind a proxy.
GENERATION_CHECK_S = 5.0
# Every script the backend calls: all loaded again whenever Redis refuses one it forgot.
SCRIPTS = (RESERVE, SETTLE, SEED, SWEEP, CHARGE)


# A settle waiting to be sent: its shape's SETTLE call and its ARGV; the hold, the
# usage and the instant it finished, to owe it as a late settle if Redis does not take it.
Settle = tuple[ScriptCall, list[str], Hold, Actual | None, int]


class RedisBackend:
    def __init__(
        self,
        client: aioredis.Redis,
        fast: RespConnection | None = None,
        clock: Clock = wall_clock_ms,
        generation: Generation | None = None,
    ) -> None:
        self._redis = client
        self.secrets: tuple[str, ...] = ()  # the URL's password: never in a health line
        self._fast = fast  # the scripts' calls go here when the URL allows (resp.py)
        self._clock = clock  # stamps rebuilds and unchecked settles: CHARGE compares them
        self._reserve = client.register_script(RESERVE)
        self._settle = client.register_script(SETTLE)
        self._seed = client.register_script(SEED)
        self._sweep = client.register_script(SWEEP)
        self._charge = client.register_script(CHARGE)
        # Through redis-py (no fast connection): sent ahead of calls Redis refused.
        self._loads: list[tuple[str | int, ...]] = [("SCRIPT", "LOAD", s) for s in SCRIPTS]
        # Each shape's RESERVE and SETTLE calls less the request's numbers, made once.
        self._calls = ShapeCalls(self._reserve.sha, self._settle.sha)
        # Which of the server's key generations the keys name (redis_generation.py): the
        # connections' greetings say; a new one makes every shape's calls again.
        self._generation = Generation() if generation is None else generation
        self._generation.on_change = self._new_generation
        # Settles wait here for the drainer, which sends what has gathered as one
        # pipeline (one write, one read) while the responses go out: no task per request.
        self._queue: list[Settle] = []
        # Settles written at once (a concurrency slot's), with their replies to come: the
        # drainer reads them. In the order written.
        self._written: deque[tuple[list[Settle], list[asyncio.Future[Any]]]] = deque()
        self._queued_since = 0.0  # the loop's time when the queue's oldest settle came
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._drainer: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._sending = 0  # batches on their way (the drainer's, a reserve's ride-alongs)
        self._closing = False
        self.lost_settles = 0  # settles Redis refused with an error (their leases free them)
        self._owed = OwedCharges(OWED_KEPT)  # unchecked requests' usage, until Redis takes it
        self.lost_charges = 0  # owed charges dropped: past OWED_KEPT, refused, or at close
        self._collector: asyncio.Task[None] | None = None  # only while charges are owed
        self._generation_check: asyncio.Task[None] | None = None  # from the first reserve

    @classmethod
    def from_url(cls, url: str, clock: Clock = wall_clock_ms) -> RedisBackend:
        generation = Generation()
        client = redis_client(url, timeout_s=REDIS_TIMEOUT_S, connect=generation.redis_py_connect)
        fast = RespConnection.from_url(
            url,
            timeout_s=REDIS_TIMEOUT_S,
            scripts=SCRIPTS,
            greeting=(generation.greeting, generation.greeted),
        )
        backend = cls(client, fast, clock, generation)
        backend.secrets = url_secrets(url)
        return backend

    def reserve_now(self, plan: Plan, hold_id: str, now_ms: int) -> None:
        return None  # Redis decides: always one round trip (try_reserve)

    def _new_generation(self, generation: int) -> None:
        self._calls = ShapeCalls(self._reserve.sha, self._settle.sha, generation)

    def _prefix(self, team: str) -> str:
        return team_prefix(team, self._generation.value)

    async def _greeted(self) -> None:
        """Connected, so that the keys named next are of the server's generation: the
        fast connection when it is not (its greeting runs); through redis-py, once,
        before the first call (a connection made later greets the same way, and the call
        that made it fails if the generation changed)."""
        if self._generation_check is None and not self._closing:
            check = self._check_generation()
            self._generation_check = asyncio.get_running_loop().create_task(check)
        fast = self._fast
        if fast is not None:
            if not fast.is_live():
                try:
                    await fast.connect()
                except OSError as error:  # NotSent: nothing was written
                    raise BackendUnavailable(f"Redis: {why(error)}") from error
            return
        if not self._generation.known:
            # Failing: the generation changed (learned now), or the call to come fails too.
            with contextlib.suppress(RedisError, OSError):
                await self._redis.ping()

    async def _check_generation(self) -> None:
        """Every GENERATION_CHECK_S, the greeting again on an open connection: a change
        makes the calls made from then on name the new generation's keys."""
        while not self._closing:
            await asyncio.sleep(GENERATION_CHECK_S)
            try:
                reply = (await self._pipelined([self._generation.greeting()]))[0]
            except (RedisError, RespError, OSError):
                continue  # unreachable: the next connection greets
            with contextlib.suppress(ConnectionError):  # not answerable yet: next time
                self._generation.greeted(reply)

    async def try_reserve(self, plan: Plan, hold_id: str, now_ms: int) -> Decision:
        try:
            return await self._reserve_once(plan, hold_id, now_ms)
        except BackendUnavailable as error:
            if not isinstance(error.__cause__, ServerChanged | GenerationChanged):
                raise
        # Not sent: the connection that carried it found a new server. Made again, for the
        # keys of the server's generation (learned by then).
        return await self._reserve_once(plan, hold_id, now_ms)

    async def _reserve_once(self, plan: Plan, hold_id: str, now_ms: int) -> Decision:
        lease_end = now_ms + plan.lease_ms
        try:
            fast = self._fast
            if fast is None or not fast.is_live():
                await self._greeted()
            reserve = self._calls.of(plan.shape)[0]
            args = reserve.args(hold_id, reserve_values(plan, now_ms, lease_end))
            if fast is None:  # owed charges go with the drainer (after the next settle)
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
            # Charges owed (Redis was away) go before the reserve: it checks the outage's spend.
            charges = self._owed.take(OWED_RIDE_ALONG) if self._owed else []
            generation = self._generation.value
            commands += [charge_command(self._charge.sha, c, generation) for c in charges]
            commands.append(reserve.command(args))
            self._sending += 1
            try:
                replies = await fast.call_many(commands)
            except (RespError, OSError) as error:
                self._owe_settles(batch, error)
                self._owe_again(charges)
                raise BackendUnavailable(f"Redis: {why(error)}") from error
            finally:
                self._sending -= 1
                self._maybe_idle()
            reply = replies.pop()
            self._accounted(batch, replies)
            if charges:  # their replies follow the batch's
                self._charges_answered(charges, replies[len(batch) :])
            if isinstance(reply, RespError):
                raise BackendUnavailable(f"Redis: {why(reply)}")
            return decode_reserve(plan, hold_id, lease_end, reply)
        except BackendUnavailable as error:
            if _may_run_late(error.__cause__):  # written: a hung Redis may run it yet
                self._owe(abandoned_reserve(hold_id, plan, self._clock(), lease_end))
            raise

    async def seed(self, team: str, seeds: tuple[tuple[BudgetRule, int], ...]) -> None:
        if not seeds:
            return
        p = self._prefix(team)
        # Stamped after the ledger was read: a request that finished while it was read is
        # not charged (its row may be in the sum); one that finished after it is.
        # With each counter, what SEED needs to adopt the holds in flight it applies to.
        args: list[Any] = [self._clock()]
        for check, used in seeds:
            unit = "t" if check.unit is Unit.TOKENS else "u"
            who = "t" if check.scope is Scope.TEAM else key_owner(check.key)
            keep_until = check.resets_ms + KEEP_AFTER_PERIOD_MS
            args += [used, keep_until, check.starts_ms, check.resets_ms, unit, who]
        keys = [p + "holds", p + "exp", *(p + c.key for c, _ in seeds), p + SEED_MARKER]
        await self._call(self._seed, keys, [*args, SEED_MARKER_KEEP_MS])

    async def before_rebuild(self, team: str) -> None:
        """When the team's seed marker is gone too, Redis lost its keys (restarted empty,
        flushed; or this is the team's first use), and the usage of the requests finished
        just before is in the ledger only once every replica's writer has stored its last
        batch. Wait for that (the rebuild then reads it)."""
        try:
            found = await self._redis.exists(self._prefix(team) + SEED_MARKER)
        except (RedisError, OSError) as error:
            raise BackendUnavailable(f"Redis: {type(error).__name__}") from error
        if not found:
            await asyncio.sleep(LOST_ROWS_WAIT_S)

    def settle(self, hold: Hold, actual: Actual | None, now_ms: int | None = None) -> None:
        if not hold.is_checked:  # nothing reserved to free; what it used is owed
            self._owe(owed_charge(hold.id, hold.plan, actual, self._clock()))
            return
        loop = asyncio.get_running_loop()
        if not self._queue:
            self._queued_since = loop.time()
        self._queue.append(self._settle_of(hold, actual, now_ms))
        self._idle.clear()
        self._start_drainer()
        if 0 <= hold.spare_slots < SPARE_SLOTS_AT_ONCE:  # a slot soon wanted: free it now
            self._write_queue_now()
        elif self._timer is None:
            self._timer = loop.call_later(SETTLE_DELAY_S, self._send_queued)

    def _write_queue_now(self) -> None:
        """The queued settles (the one just queued last) written in this call, before the
        caller writes the response's end: on this replica the next reserve goes after
        them on the same connection, and Redis has them before the client could send
        anything to another. Not connected: the drainer sends them at once (connecting)."""
        batch = self._queue
        fast = self._fast
        futures = None if fast is None else fast.send_now(self._settle_commands(batch))
        if futures is not None:
            self._queue = []
            self._written.append((batch, futures))
            self._sending += 1
        self._wake.set()

    def charge_unreserved(
        self,
        team: str,
        subject: str,
        charge_id: str,
        added: tuple[BudgetRule, ...],
        actual: Actual,
        finished_ms: int,
    ) -> None:
        # CHARGE's rule: only to a counter rebuilt before `finished_ms`, once per id.
        amounts = tuple(rule.actual(actual) for rule in added)
        if not any(amount > 0 for amount in amounts):
            return
        shape = Shape(team, subject, added, (), ())
        self._owe(OwedCharge(charge_id, shape, amounts, finished_ms))
        self._idle.clear()
        self._start_drainer()
        self._wake.set()  # sent now (after the settles queued), not at the next reserve

    def _start_drainer(self) -> None:
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

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

    def _settle_of(self, hold: Hold, actual: Actual | None, now_ms: int | None = None) -> Settle:
        plan = hold.plan
        settle = self._calls.of(plan.shape)[1]
        elapsed = None if now_ms is None else now_ms - hold.started_ms
        args = settle.args(hold.id, settle_values(plan, actual, elapsed))
        return settle, args, hold, actual, self._clock()

    async def _settle_now(self, hold: Hold, actual: Actual | None) -> None:
        """Settle at once and wait for Redis to take it (the equivalence test's path)."""
        await self._send_settles([self._settle_of(hold, actual)])

    async def flush(self) -> None:
        """Send what is queued now; wait until every settle has been sent (and answered,
        or lost) and the charges owed were offered to Redis (kept if it did not answer)."""
        self._wake.set()
        await self._idle.wait()
        if self._owed:  # no settle woke the drainer for them
            await self._charge_owed()

    async def _drain(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            is_answering = True
            while self._written or self._queue:
                if self._written:  # counted in _sending when written
                    batch, futures = self._written.popleft()
                    try:
                        is_answering = await self._settles_answered(batch, futures)
                    finally:
                        self._sending -= 1
                    continue
                batch, self._queue = self._queue, []
                self._sending += 1
                try:
                    is_answering = await self._send_settles(batch)
                finally:
                    self._sending -= 1
            if self._owed and is_answering:
                self._sending += 1
                try:
                    await self._charge_owed()
                finally:
                    self._sending -= 1
            self._maybe_idle()
            if self._closing:
                return

    def _accounted(self, batch: list[Settle], replies: list[Any]) -> None:
        """The settles' replies: failures are counted lost, except a refusal for not
        knowing the script even once loaded again (flushed again meanwhile: none of it
        ran); those are owed, as late settles."""
        again, errors = refused_for_script(batch, replies)
        if errors:
            self._lost(len(errors), errors[0])
        if again:
            self._owe_settles(again, NoScript("the script forgotten again, once loaded"))

    def _lost(self, count: int, error: Exception) -> None:
        self.lost_settles += count
        log.warning(
            "limits settle lost: Redis refused it (the reservation frees at its lease end)",
            extra={"fields": {"settles": count, "error": why(error)}},
        )

    def _owe_settles(self, batch: list[Settle], error: Exception) -> None:
        """Settles Redis did not take (unreachable): owed, delivered once it answers."""
        if not batch:
            return
        may_have_run = _may_run_late(error)
        for _, _, hold, actual, finished_ms in batch:
            self._owe(
                late_settle(hold.id, hold.plan, actual, finished_ms, may_have_run=may_have_run)
            )
        log.warning(
            "limits settles deferred: Redis unreachable (sent again once it answers)",
            extra={"fields": {"settles": len(batch), "error": why(error)}},
        )

    def _owe(self, charge: OwedCharge | None) -> None:
        if charge is not None:
            self._charges_lost(self._owed.owe(charge), f"more than {OWED_KEPT} owed")
            self._start_collector()

    def _owe_again(self, charges: list[OwedCharge]) -> None:
        if charges:
            self._charges_lost(self._owed.owe_again(charges), f"more than {OWED_KEPT} owed")
            self._start_collector()

    def _start_collector(self) -> None:
        """The task that offers what is owed to Redis every OWED_RETRY_S, unless it runs
        already. Only while something is owed: a healthy Redis has no task nor timer."""
        if self._closing or (self._collector is not None and not self._collector.done()):
            return
        self._collector = asyncio.get_running_loop().create_task(self._collect_owed())

    async def _collect_owed(self) -> None:
        """Until nothing is owed: Redis may be back while this process gets no request (its
        traffic went to other replicas), and every other replica admits against counters
        short of this one's outage spend until it lands."""
        while self._owed and not self._closing:
            await asyncio.sleep(OWED_RETRY_S)
            await self._charge_owed()  # bounded; what Redis does not take stays owed

    def _charges_lost(self, count: int, reason: str) -> None:
        if not count:
            return
        self.lost_charges += count
        log.warning(
            "limits charges lost: unchecked requests' usage not added to their budgets",
            extra={"fields": {"charges": count, "error": reason}},
        )

    async def _charge_owed(self) -> None:
        """Send the charges owed, a batch per round trip, until none is left or Redis does
        not answer (the rest stay owed). Bounded: charges owed again are not chased."""
        for _ in range(-(-len(self._owed) // OWED_BATCH)):
            if not self._owed or not await self._send_charges(self._owed.take(OWED_BATCH)):
                return

    async def _send_charges(self, charges: list[OwedCharge]) -> bool:
        """One round trip of charges. False: Redis did not answer; they stay owed (sent
        again, a charge that did land adds nothing: CHARGE marks it)."""
        generation = self._generation.value
        commands = [charge_command(self._charge.sha, c, generation) for c in charges]
        try:
            replies = await self._pipelined(commands)
        except (RedisError, RespError, OSError):
            self._owe_again(charges)
            return False
        except asyncio.CancelledError:  # the collector stopped at close: close counts them
            self._owe_again(charges)
            raise
        self._charges_answered(charges, replies)
        return True

    def _charges_answered(self, charges: list[OwedCharge], replies: list[Any]) -> None:
        """Refused for not knowing the script even once loaded again (none of it ran):
        they wait for the next batch. Any other error would come again: those are lost."""
        again, errors = refused_for_script(charges, replies)
        if errors:
            self._charges_lost(len(errors), why(errors[0]))
        self._owe_again(again)

    def _settle_commands(self, batch: list[Settle]) -> list[Command]:
        return [call.command(args) for call, args, *_ in batch]

    async def _settles_answered(
        self, batch: list[Settle], futures: list[asyncio.Future[Any]]
    ) -> bool:
        """The replies of settles written at once; False: Redis did not answer (the batch
        is owed, as late settles)."""
        try:
            answers = await replies(futures)
        except (RespError, OSError) as error:
            self._owe_settles(batch, error)
            return False
        self._accounted(batch, answers)
        return True

    async def _send_settles(self, batch: list[Settle]) -> bool:
        """False: Redis did not answer (the batch is owed, as late settles)."""
        try:
            if len(batch) == 1:
                call, args, *_ = batch[0]
                await self._evalsha(self._settle, call.keys, args, call)
                return True
            if self._fast is not None:  # framed once per shape (redis_calls.py)
                replies = await self._fast.call_many(self._settle_commands(batch))
            else:
                sha = self._settle.sha
                replies = await self._pipelined(
                    [
                        ("EVALSHA", sha, len(call.keys), *call.keys, *args)
                        for call, args, *_ in batch
                    ]
                )
        except (RedisError, RespError, OSError) as error:
            self._owe_settles(batch, error)
            return False
        self._accounted(batch, replies)
        return True

    async def _pipelined(self, commands: list[tuple[str | int, ...]]) -> list[Any]:
        """One round trip of commands (their parts), on the fast connection or through
        redis-py; the replies in order, a refused command's error as its reply. Those
        Redis refused for a script it forgot go again, behind every script loaded again:
        the fast connection does it itself, at once (resp.py); through redis-py, in a
        round trip of its own (and the pool's other connections may run commands sent
        meanwhile first: the order after a flush is the fast connection's alone)."""
        if self._fast is not None:
            return await self._fast.call_many(list(commands))
        replies = await self._redis_py_pipeline(commands)
        again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if again:
            retried = await self._redis_py_pipeline([*self._loads, *(commands[i] for i in again)])
            for i, reply in zip(again, retried[len(self._loads) :], strict=True):
                replies[i] = reply
        return replies

    async def _redis_py_pipeline(self, commands: list[tuple[str | int, ...]]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return await pipe.execute(raise_on_error=False)

    async def snapshot(self, plan: Plan, now_ms: int) -> Snapshot:
        await self._greeted()
        p = self._prefix(plan.team)
        if self._owed and (plan.budgets or plan.concurrency):
            await self._charge_owed()  # the outage's spend counted, phantom holds freed
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
        """ "ok", or why not in Redis's own words: refused (a wrong database index or
        password: AuthenticationError, ResponseError) or unreachable (anything else).
        Through both connections: redis-py's, and the fast one every reserve and settle
        goes by (ok only if a reserve could get through it now)."""
        try:
            await self._ping_redis_py()
        except (AuthenticationError, ResponseError) as error:
            return f"error: Redis refused ({error_cause(error, self.secrets)})"
        except (RedisError, OSError) as error:
            return f"error: Redis unreachable ({error_cause(error, self.secrets)})"
        if self._fast is not None:
            try:
                await self._fast.connect()  # a greeting that found a new server fails no ping
                await self._fast.call(("PING",))
            except RespError as error:
                return f"error: Redis refused ({error_cause(error, self.secrets)})"
            except Exception as error:  # whatever it is, the limits cannot get through
                return f"error: Redis unreachable ({error_cause(error, self.secrets)})"
        return "ok"

    async def _ping_redis_py(self) -> None:
        generation = self._generation.value
        try:
            await self._redis.ping()
        except RedisConnectionError:
            if self._generation.value == generation:
                raise
            await self._redis.ping()  # its connection found a new server: asked again

    async def close(self) -> None:
        self._closing = True
        if self._collector is not None:  # the drainer below makes the last offer
            self._collector.cancel()
        if self._generation_check is not None:
            self._generation_check.cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._owed:  # charges owed get a moment to land too
            self._start_drainer()
        drainer = self._drainer
        if drainer is not None and not drainer.done():  # queued settles get a moment to land
            self._wake.set()
            await asyncio.wait([drainer], timeout=SETTLE_DRAIN_S)
            drainer.cancel()
        self._charges_lost(self._owed.clear(), "Redis unreachable at close")
        if self._fast is not None:
            await self._fast.close()
        await self._redis.aclose()

    async def _call(
        self,
        script: AsyncScript,
        keys: list[str],
        args: list[Any],
        call: ScriptCall | None = None,
    ) -> Any:
        try:
            return await self._evalsha(script, keys, args, call)
        except (RedisError, RespError, OSError) as error:
            raise BackendUnavailable(f"Redis: {why(error)}") from error

    async def _evalsha(
        self,
        script: AsyncScript,
        keys: list[str],
        args: list[Any],
        call: ScriptCall | None = None,
    ) -> Any:
        """EVALSHA on the fast connection (framed by `call`, a shape's call made once,
        when given), else through redis-py. Raises an error reply (RespError, RedisError):
        NOSCRIPT only if Redis forgot the script again once it was loaded again."""
        fast = self._fast
        if fast is not None and call is not None:
            return await fast.call(call.command(args))
        command: tuple[str | int, ...] = ("EVALSHA", script.sha, len(keys), *keys, *args)
        if fast is not None:
            return await fast.call(command)
        reply = (await self._pipelined([command]))[0]
        if isinstance(reply, Exception):
            raise reply
        return reply


def _may_run_late(error: BaseException | None) -> bool:
    """Whether a call that failed with `error` may have been written to Redis (and run
    when a hung Redis wakes): a timeout or a connection lost, not one never made."""
    if isinstance(error, NotSent):
        return False
    return isinstance(error, OSError | RedisTimeoutError)


def decode_reserve(plan: Plan, hold_id: str, lease_end: int, reply: list[Any]) -> Decision:
    """The RESERVE script's answer → the same values the in-process backend returns."""
    status = int(reply[0])
    if status == 0:
        requests, tokens = _views(plan, reply, 1)
        spare = int(reply[1 + 2 * len(plan.shape.rates)]) if plan.concurrency else -1
        return Hold(hold_id, plan, lease_end, requests, tokens, spare_slots=spare)
    if status == 4:
        return NeedsSeed(tuple(plan.budgets[int(i) - 1] for i in reply[1:]))
    if status == 5:  # never for a reserve awaited: each has its own id (redis_scripts.py)
        raise BackendUnavailable(f"Redis: reserve {hold_id} was given up on already")
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
