"""The limits service: reserve a plan (rebuilding counters from the ledger when the
backend has none), settle a hold, and decide what a backend failure means.

Built once in the lifespan; the pipeline stage (stage.py) calls it. The clock is
a parameter so tests can stand at a period boundary.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Final, final

from gateway.limits.answers import BudgetRefusal, refusal_error
from gateway.limits.backend import (
    BackendUnavailable,
    Hold,
    LedgerUnreadable,
    LimitsBackend,
    NeedsSeed,
    Snapshot,
)
from gateway.limits.budget import Counter, Verdict, verdict
from gateway.limits.errors import LimitsUnavailable
from gateway.limits.plan import Actual, BudgetRule, Plan
from gateway.limits.rebuild import LedgerSums, rebuilt
from gateway.policy.schema import BackendErrorMode

log = logging.getLogger("gateway.limits")
Clock = Callable[[], int]  # epoch ms
# A seed that does not stick (keys vanishing again at once) is retried this often.
SEED_ATTEMPTS: Final = 3


@final
class HoldIds:
    """A hold's id: unique across every replica sharing a Redis (a random prefix per
    process, again in a forked child) and within the process (a count): no syscall
    per request. A native class, so compiled code reads it with no lookup by name."""

    def __init__(self) -> None:
        self.prefix = ""
        self.count = 0
        self.renew()

    def renew(self) -> None:
        self.prefix, self.count = os.urandom(8).hex(), 0

    def next(self) -> str:
        # The prefix has a fixed length, so prefix + decimal count is unique.
        self.count += 1
        return self.prefix + str(self.count)


_HOLD_IDS: Final = HoldIds()
os.register_at_fork(after_in_child=_HOLD_IDS.renew)


def new_hold_id() -> str:
    return _HOLD_IDS.next()


def larger_than_a_whole_budget(plan: Plan) -> BudgetRefusal | None:
    """The first budget the request's estimate alone is more than (budget.verdict's
    TOO_LARGE, whatever its counter holds): None when it fits every one."""
    for rule in plan.budgets:
        amount = plan.amount(rule)
        if verdict(0, 0, rule.limit, amount) is Verdict.TOO_LARGE:
            return BudgetRefusal(rule, amount, Verdict.TOO_LARGE, Counter())
    return None


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Limits:
    def __init__(
        self, backend: LimitsBackend, sums: LedgerSums, clock: Clock = wall_clock_ms
    ) -> None:
        self.backend = backend
        self.clock = clock
        self._sums = sums
        self.unchecked = 0  # requests served unchecked (backend down, on_backend_error: open)

    def reserve_now(
        self, plan: Plan, mode: BackendErrorMode, now_ms: int, request_id: str = ""
    ) -> Hold | None:
        """`reserve` without waiting, when the backend decides in this process and its
        counters need no rebuild; None: await `reserve`. Raises the refusal likewise."""
        hold_id = new_hold_id()
        try:
            decision = self.backend.reserve_now(plan, hold_id, now_ms)
        except BackendUnavailable as error:
            return self._unchecked(plan, hold_id, mode, error, request_id)
        if isinstance(decision, Hold):
            return decision
        if decision is None or isinstance(decision, NeedsSeed):
            return None
        raise refusal_error(decision, plan.team)

    async def reserve(
        self, plan: Plan, mode: BackendErrorMode, now_ms: int | None = None, request_id: str = ""
    ) -> Hold:
        """A hold on every check of `plan` (at `now_ms`, else the clock's now), or the
        refusal raised as a GatewayError. `request_id`: for the log line of a request
        served unchecked."""
        hold_id = new_hold_id()
        if now_ms is None:
            now_ms = self.clock()
        try:
            for _ in range(SEED_ATTEMPTS):
                decision = await self.backend.try_reserve(plan, hold_id, now_ms)
                if not isinstance(decision, NeedsSeed):
                    break
                await self.seed(plan, decision)
            else:
                raise BackendUnavailable("budget counters vanished while being rebuilt")
        except BackendUnavailable as error:
            return self._unchecked(plan, hold_id, mode, error, request_id)
        if isinstance(decision, Hold):
            return decision
        raise refusal_error(decision, plan.team)

    async def seed(self, plan: Plan, needs: NeedsSeed) -> None:
        await self.backend.before_rebuild(plan.team)
        try:
            seeds = await rebuilt(self._sums, plan.team, plan.subject, needs.checks)
        except Exception as error:  # any database failure: the counters cannot be trusted
            raise LedgerUnreadable(f"ledger unreadable: {type(error).__name__}") from error
        await self.backend.seed(plan.team, seeds)

    def _unchecked(
        self,
        plan: Plan,
        hold_id: str,
        mode: BackendErrorMode,
        error: BackendUnavailable,
        request_id: str,
    ) -> Hold:
        too_large = larger_than_a_whole_budget(plan)
        if too_large is not None:  # refused whatever the counters hold: no store needed
            raise refusal_error(too_large, plan.team) from error
        if mode is BackendErrorMode.CLOSED:
            # Name what is down: with the in-process backend there is no store, only the
            # database the counters are rebuilt from after a restart or a policy change.
            if isinstance(error, LedgerUnreadable):
                down = "its database, which budgets are rebuilt from, is unreachable"
            else:
                down = "its limits store is unreachable"
            raise LimitsUnavailable(
                f"The gateway cannot check usage limits right now ({down}), so it refuses "
                "requests rather than let budgets overrun. Please retry shortly."
            ) from error
        self.unchecked += 1
        log.warning(
            "limits backend unreachable: request served unchecked (on_backend_error: open)",
            extra={
                "fields": {
                    "request_id": request_id,
                    "team": plan.team,
                    "error": str(error),
                    "unchecked": self.unchecked,
                }
            },
        )
        return Hold(hold_id, plan, 0, is_checked=False)

    def settle(self, hold: Hold, actual: Actual | None) -> None:
        self.backend.settle(hold, actual, self.clock())

    def charge_unreserved(
        self, team: str, subject: str, charge_id: str, added: tuple[BudgetRule, ...], actual: Actual
    ) -> None:
        self.backend.charge_unreserved(team, subject, charge_id, added, actual, self.clock())

    async def snapshot(self, plan: Plan) -> Snapshot:
        return await self.backend.snapshot(plan, self.clock())

    async def close(self) -> None:
        await self.backend.close()
