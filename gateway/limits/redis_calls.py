"""The RESERVE and SETTLE calls of one shape, made once per shape (a team's checks for
one subject during one minute, plan.py) instead of once per request.

What changes from one request to the next is only the hold id and a few numbers (the
instant, the lease end, the amounts); the keys, the limits and the periods' ends do
not. So a shape's call is kept as its keys, a %-template of its numbers argument (the
layout redis_scripts.py reads) and, for the fast connection (resp.py), the RESP bytes
of everything before the two arguments. A request then fills in the template and
frames two arguments: ~1 µs, where building and packing the whole call cost ~7.

Also the CHARGE call of a request served unchecked (Redis was unreachable, the policy
said open): its true usage, owed to its budget counters until Redis answers again; and
of a reserve given up on (no reply in time), whose hold must be freed or never made;
and of a settle Redis did not take (it was away), delivered late. Rare, so made per
charge, not per shape.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple, TypeVar

from redis.exceptions import NoScriptError

from gateway.limits.gcra import settled_delta
from gateway.limits.memory import KEEP_AFTER_PERIOD_MS
from gateway.limits.plan import Actual, Plan, RateKind, Scope, Shape, Unit, owner
from gateway.limits.resp import NoScript, bulk

Sent = TypeVar("Sent")

# Shapes whose calls are kept; more and the cache starts over (shapes are per minute).
CALLS_KEPT = 8192


def team_prefix(team: str, generation: int = 0) -> str:
    """All of one team's keys in one hash slot (Redis Cluster): the `{team}` tag; and of
    one generation of the server's keys (redis_generation.py; 0 names no generation)."""
    if generation:
        return f"gw:{{{team}}}:g{generation}:"
    return f"gw:{{{team}}}:"


class ScriptCall(NamedTuple):
    """One script's call for a shape, less the hold id and the numbers' values."""

    keys: list[str]  # never changed: shared by every request of the shape
    numbers: str  # a %-template (redis_scripts.py's layout): fill with `values`
    head: bytes  # RESP: the array header, EVALSHA, the sha, the key count, the keys

    def args(self, hold_id: str, values: dict[str, int]) -> list[str]:
        """ARGV: the hold id and the numbers (`values` by the template's names)."""
        return [hold_id, self.numbers % values]

    def command(self, args: list[str]) -> bytes:
        """The whole command in RESP, as resp.pack frames it."""
        return self.head + bulk(args[0]) + bulk(args[1])


def _script_call(sha: str, keys: list[str], numbers: str) -> ScriptCall:
    parts: tuple[str | int, ...] = ("EVALSHA", sha, len(keys), *keys)
    head = b"*%d\r\n" % (len(parts) + 2) + b"".join(map(bulk, parts))  # + hold id, numbers
    return ScriptCall(keys, numbers, head)


# The template's names: n = now (ms), l = lease end (ms), t = tokens, u = nano-USD,
# d = true tokens less the estimate (tpm's settle).
def reserve_call(sha: str, shape: Shape, generation: int = 0) -> ScriptCall:
    """RESERVE's KEYS (holds, exp, budgets, rates, concurrency) and numbers: now,
    lease end, the counts, then (limit, amount, keep until) per budget, (limit, amount)
    per rate, the limit per concurrency check, then the request's tokens, nano-USD and
    its user's key owner (what a counter rebuilt while it is in flight adopts: SEED)."""
    p = team_prefix(shape.team, generation)
    keys = [p + "holds", p + "exp"]
    numbers = [f"%(n)d %(l)d {len(shape.budgets)} {len(shape.rates)} {len(shape.concurrency)}"]
    for b in shape.budgets:
        keys.append(p + b.key)
        amount = "%(t)d" if b.unit is Unit.TOKENS else "%(u)d"
        numbers.append(f"{b.limit} {amount} {b.resets_ms + KEEP_AFTER_PERIOD_MS}")
    for r in shape.rates:
        keys.append(p + r.key)
        numbers.append(f"{r.limit} {'%(t)d' if r.kind is RateKind.TOKENS else 1}")
    for c in shape.concurrency:
        keys.append(p + c.key)
        numbers.append(str(c.limit))
    # A quoted subject holds no space; its '%' escaped from the template's filling.
    numbers.append("%(t)d %(u)d " + owner(Scope.USER, shape.subject).replace("%", "%%"))
    return _script_call(sha, keys, " ".join(numbers))


def settle_call(sha: str, shape: Shape, generation: int = 0) -> ScriptCall:
    """SETTLE's KEYS (holds, exp, budgets, tpm rates) and numbers: the counts, then
    used per budget (-1: release), the token difference per tpm."""
    p = team_prefix(shape.team, generation)
    keys = [p + "holds", p + "exp"]
    token_rates = [r for r in shape.rates if r.kind is RateKind.TOKENS]
    numbers = [f"{len(shape.budgets)} {len(token_rates)}"]
    for b in shape.budgets:
        keys.append(p + b.key)
        numbers.append("%(t)d" if b.unit is Unit.TOKENS else "%(u)d")
    for i, r in enumerate(token_rates):
        keys.append(p + r.key)
        numbers.append(f"%(d{i})d")
    return _script_call(sha, keys, " ".join(numbers))


def reserve_values(plan: Plan, now_ms: int, lease_end: int) -> dict[str, int]:
    return {"n": now_ms, "l": lease_end, "t": plan.tokens, "u": plan.nanousd}


def settle_values(
    plan: Plan, actual: Actual | None, elapsed_ms: int | None = None
) -> dict[str, int]:
    """What a settle writes: the true usage, or -1 (release) when no upstream answered;
    per tpm rate (`d0`, `d1`…), the difference its bucket takes, a refund bounded by what
    may be left of a reservation made `elapsed_ms` ago (gcra.settled_delta)."""
    used = 0 if actual is None else actual.tokens
    values = {"t": -1, "u": -1} if actual is None else {"t": used, "u": actual.nanousd}
    token_rates = (r for r in plan.shape.rates if r.kind is RateKind.TOKENS)
    for i, rate in enumerate(token_rates):
        values[f"d{i}"] = settled_delta(plan.tokens, used, elapsed_ms, rate.limit)
    return values


class ShapeCalls:
    """Each shape's RESERVE and SETTLE calls, made when a shape is first seen, naming
    the keys of one generation."""

    def __init__(self, reserve_sha: str, settle_sha: str, generation: int = 0) -> None:
        self._reserve_sha, self._settle_sha = reserve_sha, settle_sha
        self.generation = generation
        self._calls: dict[int, tuple[Shape, ScriptCall, ScriptCall]] = {}

    def of(self, shape: Shape) -> tuple[ScriptCall, ScriptCall]:
        found = self._calls.get(id(shape))
        if found is None or found[0] is not shape:  # an id reused by a newer shape
            if len(self._calls) >= CALLS_KEPT:
                self._calls.clear()
            found = self._calls[id(shape)] = (
                shape,
                reserve_call(self._reserve_sha, shape, self.generation),
                settle_call(self._settle_sha, shape, self.generation),
            )
        return found[1], found[2]


class OwedCharge(NamedTuple):
    """What a request served unchecked used, owed to its budget counters, or a reserve
    given up on, whose hold Redis owes back (CHARGE)."""

    hold_id: str  # marks the charge on each counter it reached: sent again, never counted twice
    shape: Shape  # its budgets' keys (shared with every request of the shape)
    amounts: tuple[int, ...]  # per budget of the shape, in the budget's unit
    finished_ms: int  # when it settled: a counter rebuilt from the ledger since may hold it
    # A reserve given up on: its lease end, until which a late run of it must take
    # nothing (0: none, a usage charge)
    lease_end_ms: int = 0
    # A settle Redis did not take: NEVER_SENT or MAY_HAVE_RUN (0: none). CHARGE frees its
    # hold if still held, then charges its usage (redis_scripts.py says when).
    late_settle: int = 0


NEVER_SENT = 1  # a late settle whose SETTLE never reached Redis
MAY_HAVE_RUN = 2  # one Redis read and never answered: a hung Redis may run it yet


def owed_charge(
    hold_id: str, plan: Plan, actual: Actual | None, finished_ms: int
) -> OwedCharge | None:
    """What an unchecked request owes its budgets; None: nothing (no upstream answered,
    no budget, or nothing used)."""
    if actual is None:
        return None
    amounts = tuple(b.actual(actual) for b in plan.budgets)
    if not any(amount > 0 for amount in amounts):
        return None
    return OwedCharge(hold_id, plan.shape, amounts, finished_ms)


def abandoned_reserve(
    hold_id: str, plan: Plan, given_up_ms: int, lease_end_ms: int
) -> OwedCharge | None:
    """A reserve the gateway gave up on (sent, no reply in time): a hung Redis may run it
    later, and its hold must then take nothing. None: it could hold nothing past the
    call (no budget, no concurrency: its rate levels are what the request, served or
    refused, is counted as)."""
    if not (plan.budgets or plan.concurrency):
        return None
    shape = plan.shape
    return OwedCharge(hold_id, shape, (0,) * len(shape.budgets), given_up_ms, lease_end_ms)


def late_settle(
    hold_id: str, plan: Plan, actual: Actual | None, finished_ms: int, *, may_have_run: bool
) -> OwedCharge | None:
    """A checked request's settle that Redis did not take, to deliver once it answers: its
    hold freed, its usage charged. None: it holds nothing a lease would not free as well
    (no budget, no concurrency)."""
    if not (plan.budgets or plan.concurrency):
        return None
    shape = plan.shape
    if actual is None:
        amounts: tuple[int, ...] = (0,) * len(shape.budgets)
    else:
        amounts = tuple(max(0, b.actual(actual)) for b in plan.budgets)
    kind = MAY_HAVE_RUN if may_have_run else NEVER_SENT
    return OwedCharge(hold_id, shape, amounts, finished_ms, 0, kind)


def charge_command(sha: str, charge: OwedCharge, generation: int = 0) -> tuple[str | int, ...]:
    """CHARGE's call: KEYS the team's holds, their leases and the budget counters; ARGV
    the hold id, then in one string the instant it finished, the lease end of a reserve
    given up on (0: none), the late settle's kind (0: none) and the amount per counter."""
    p = team_prefix(charge.shape.team, generation)
    keys = [p + "holds", p + "exp", *(p + b.key for b in charge.shape.budgets)]
    numbers = " ".join(
        map(str, (charge.finished_ms, charge.lease_end_ms, charge.late_settle, *charge.amounts))
    )
    return ("EVALSHA", sha, len(keys), *keys, charge.hold_id, numbers)


def excess(owed: int, kept: int) -> int:
    """How many of the oldest owed charges go, so that at most `kept` stay."""
    return max(0, owed - kept)


class OwedCharges:
    """Charges owed while Redis is away, oldest first, at most `kept` of them: past it the
    oldest go (an outage must not grow the process without bound). Each change says how
    many went, for the backend to count. No I/O: the backend sends them."""

    def __init__(self, kept: int) -> None:
        self._kept = kept
        self._charges: deque[OwedCharge] = deque()

    def __len__(self) -> int:
        return len(self._charges)

    def owe(self, charge: OwedCharge) -> int:
        self._charges.append(charge)
        return self._trim()

    def owe_again(self, charges: list[OwedCharge]) -> int:
        """Charges taken and not landed: owed again, still the oldest."""
        self._charges.extendleft(reversed(charges))
        return self._trim()

    def take(self, count: int) -> list[OwedCharge]:
        """The oldest `count` (or all), no longer owed here: the caller sends them."""
        charges = self._charges
        return [charges.popleft() for _ in range(min(count, len(charges)))]

    def clear(self) -> int:
        dropped = len(self._charges)
        self._charges.clear()
        return dropped

    def _trim(self) -> int:
        dropped = excess(len(self._charges), self._kept)
        for _ in range(dropped):
            self._charges.popleft()
        return dropped


def refused_for_script(
    batch: list[Sent], replies: list[object]
) -> tuple[list[Sent], list[Exception]]:
    """A pipelined batch's replies: the calls Redis refused for not knowing the script (a
    restarted Redis; none of it ran, so they can go again), and the other errors."""
    again: list[Sent] = []
    errors: list[Exception] = []
    for sent, reply in zip(batch, replies, strict=False):
        if isinstance(reply, NoScriptError | NoScript):
            again.append(sent)
        elif isinstance(reply, Exception):
            errors.append(reply)
    return again, errors
