"""A shape's RESERVE and SETTLE calls, made once: the same bytes on the wire as building
each call from its plan (the layout redis_scripts.py reads), for any team's rules."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.limits.memory import KEEP_AFTER_PERIOD_MS
from gateway.limits.plan import (
    Actual,
    Estimate,
    Plan,
    RateKind,
    Scope,
    Unit,
    build_plan,
    owner,
)
from gateway.limits.redis_calls import (
    ShapeCalls,
    reserve_call,
    reserve_values,
    settle_call,
    settle_values,
    team_prefix,
)
from gateway.limits.resp import pack
from gateway.policy.compiled import Budget, BudgetPeriod, TeamRules
from gateway.policy.schema import MAX_RATE_PER_MINUTE, LimitsSpec, PerUserSpec

SHA = "0123456789abcdef0123456789abcdef01234567"
NOW = 1_750_000_000_000

_limit = st.none() | st.integers(1, MAX_RATE_PER_MINUTE)
_concurrency = st.none() | st.integers(1, 2**63 - 1)
_budgets = st.lists(
    st.builds(
        Budget,
        st.sampled_from(list(BudgetPeriod)),
        _limit,
        st.none() | st.floats(0.01, 10**6, allow_nan=False),
    ),
    max_size=3,
)
_limits = st.none() | st.builds(LimitsSpec, rpm=_limit, tpm=_limit, concurrency=_concurrency)
_per_user = st.none() | st.builds(
    PerUserSpec, rpm=_limit, tpm=_limit, concurrency=_concurrency, tokens_per_day=_limit
)


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    team = TeamRules(
        draw(st.sampled_from(["search", "a{b}c", "ünï"])),
        False,
        frozenset({"m"}),
        budgets=tuple(draw(_budgets)),
        limits=draw(_limits),
        per_user=draw(_per_user),
    )
    subject = draw(st.sampled_from(["alice", "bob@example.com", "x y"]))
    estimate = Estimate(draw(st.integers(0, 10**9)), draw(st.integers(0, 10**15)))
    return build_plan(team, subject, estimate, NOW + draw(st.integers(0, 10**11)))


def reserve_reference(plan: Plan, hold_id: str, now_ms: int, lease_end: int) -> bytes:
    """RESERVE as it was built per request before shapes kept their calls."""
    shape = plan.shape
    p = team_prefix(shape.team)
    keys = [p + "holds", p + "exp"]
    nums = [now_ms, lease_end, len(shape.budgets), len(shape.rates), len(shape.concurrency)]
    for b in shape.budgets:
        keys.append(p + b.key)
        amount = plan.tokens if b.unit is Unit.TOKENS else plan.nanousd
        nums += (b.limit, amount, b.resets_ms + KEEP_AFTER_PERIOD_MS)
    for r in shape.rates:
        keys.append(p + r.key)
        nums += (r.limit, plan.tokens if r.kind is RateKind.TOKENS else 1)
    for c in shape.concurrency:
        keys.append(p + c.key)
        nums.append(c.limit)
    nums += (plan.tokens, plan.nanousd, owner(Scope.USER, shape.subject))
    return pack(("EVALSHA", SHA, len(keys), *keys, hold_id, " ".join(map(str, nums))))


def settle_reference(
    plan: Plan, hold_id: str, actual: Actual | None, elapsed_ms: int | None = None
) -> bytes:
    shape = plan.shape
    p = team_prefix(shape.team)
    keys = [p + "holds", p + "exp"]
    nums = [len(shape.budgets), 0]
    for b in shape.budgets:
        keys.append(p + b.key)
        nums.append(-1 if actual is None else b.actual(actual))
    true_tokens = 0 if actual is None else actual.tokens
    for r in shape.rates:
        if r.kind is RateKind.TOKENS:
            keys.append(p + r.key)
            delta = true_tokens - plan.tokens
            if delta < 0 and elapsed_ms is not None:  # what is left of the reservation
                left = plan.tokens - -(-max(0, elapsed_ms) * r.limit // 60_000)
                delta = max(delta, -max(0, left))
            nums.append(delta)
    nums[1] = len(keys) - 2 - len(shape.budgets)
    return pack(("EVALSHA", SHA, len(keys), *keys, hold_id, " ".join(map(str, nums))))


@settings(max_examples=300, deadline=None)
@given(
    plan=plans(),
    hold_id=st.text("0123456789abcdef", min_size=1, max_size=40),
    lease_ms=st.integers(1, 10**7),
)
def test_a_reserve_made_from_its_shape_is_the_call_built_from_its_plan(plan, hold_id, lease_ms):
    now_ms = NOW + 5
    call = reserve_call(SHA, plan.shape)
    args = call.args(hold_id, reserve_values(plan, now_ms, now_ms + lease_ms))
    assert call.command(args) == reserve_reference(plan, hold_id, now_ms, now_ms + lease_ms)
    assert pack(("EVALSHA", SHA, len(call.keys), *call.keys, *args)) == call.command(args)


@settings(max_examples=300, deadline=None)
@given(
    plan=plans(),
    hold_id=st.text("0123456789abcdef", min_size=1, max_size=40),
    actual=st.none() | st.builds(Actual, st.integers(0, 10**9), st.integers(0, 10**15)),
    elapsed_ms=st.none() | st.integers(-10, 200_000),
)
def test_a_settle_made_from_its_shape_is_the_call_built_from_its_plan(
    plan, hold_id, actual, elapsed_ms
):
    """Each tpm rate gets its own difference: a refund bounded by what is left of the
    reservation at its own rate (gcra.settled_delta)."""
    call = settle_call(SHA, plan.shape)
    args = call.args(hold_id, settle_values(plan, actual, elapsed_ms))
    assert call.command(args) == settle_reference(plan, hold_id, actual, elapsed_ms)
    assert pack(("EVALSHA", SHA, len(call.keys), *call.keys, *args)) == call.command(args)


def test_calls_are_made_once_per_shape_and_again_for_a_new_one():
    team = TeamRules("t", False, frozenset(), budgets=(Budget(BudgetPeriod.DAY, 10, None),))
    calls = ShapeCalls(SHA, SHA)
    first = build_plan(team, "u", Estimate(1, 1), NOW)
    reserve, settle = calls.of(first.shape)
    assert calls.of(first.shape)[0] is reserve and calls.of(first.shape)[1] is settle
    next_day = build_plan(team, "u", Estimate(1, 1), NOW + 86_400_000)
    assert next_day.shape is not first.shape
    assert calls.of(next_day.shape)[0].keys != reserve.keys  # the next day's counter
