"""The refusals and headers a caller reads, as OpenAI writes them."""

from __future__ import annotations

import pytest

from gateway.limits.answers import (
    BudgetRefusal,
    ConcurrencyRefusal,
    RateRefusal,
    RateView,
    budget_error,
    concurrency_error,
    go_duration,
    rate_error,
    ratelimit_headers,
    tightest,
)
from gateway.limits.budget import Counter, Verdict
from gateway.limits.plan import BudgetRule, ConcurrencyCheck, RateKind, RateRule, Scope, Unit
from gateway.policy.compiled import BudgetPeriod


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"),  # Go's time.Duration(0).String()
        (20, "20ms"),
        (999, "999ms"),
        (1000, "1s"),
        (1500, "1.5s"),
        (8640, "8.64s"),
        (60_000, "1m0s"),
        (360_000, "6m0s"),
        (3_723_004, "1h2m3.004s"),
        (-5, "0s"),
    ],
)
def test_go_durations(ms: int, text: str) -> None:
    assert go_duration(ms) == text


def budget(scope: Scope = Scope.TEAM, unit: Unit = Unit.TOKENS) -> BudgetRule:
    return BudgetRule("k", scope, unit, BudgetPeriod.MONTH, 1000, 0, 1_738_368_000_000)


def test_an_exhausted_budget_says_which_and_when_and_forbids_retries() -> None:
    error = budget_error(BudgetRefusal(budget(), 50, Verdict.EXHAUSTED, Counter(990, 0)), "search")
    assert (error.status, error.type, error.code) == (
        429,
        "insufficient_quota",
        "insufficient_quota",
    )
    assert error.headers["x-should-retry"] == "false" and "retry-after" not in error.headers
    assert "month token budget of team 'search'" in error.message
    assert "resets at 2025-02-01T00:00:00Z" in error.message
    # what decided it: used + reserved + this request's estimate over the limit
    assert "limit 1000 tokens, used 990 tokens" in error.message
    assert "this request's estimate 50 tokens" in error.message


def test_a_user_usd_budget_names_itself() -> None:
    check = budget(Scope.USER, Unit.USD)
    error = budget_error(BudgetRefusal(check, 50, Verdict.TOO_LARGE, Counter()), "search")
    assert "your per-user month USD budget in team 'search'" in error.message
    assert "0.000000050 USD" in error.message


def test_a_rate_limit_carries_the_real_wait() -> None:
    check = RateRule("k", Scope.TEAM, RateKind.TOKENS, 30000)
    views = (None, RateView(30000, 63, 60000))
    error = rate_error(RateRefusal(check, 385, 644, 63, 60000, views), "search")
    assert (error.status, error.type, error.code) == (
        429,
        "rate_limit_error",
        "rate_limit_exceeded",
    )
    assert error.headers["retry-after-ms"] == "644" and error.headers["retry-after"] == "1"
    assert "Please try again in 644ms" in error.message
    assert error.headers["x-ratelimit-remaining-tokens"] == "63"
    assert error.headers["x-ratelimit-reset-tokens"] == "1m0s"


def test_every_refusal_carries_the_rate_keys_as_they_stand() -> None:
    """A budget, concurrency or rate refusal of a team with rate limits: OpenAI's six
    headers, from the keys the refusal left unchanged; none for a team without."""
    views = (RateView(60, 0, 1000), RateView(1000, 990, 600))
    rate = RateRule("k", Scope.TEAM, RateKind.REQUESTS, 60)
    conc = ConcurrencyCheck("c", Scope.USER, 2)
    errors = [
        budget_error(BudgetRefusal(budget(), 50, Verdict.EXHAUSTED, Counter(990, 0), views), "t"),
        rate_error(RateRefusal(rate, 1, 1000, 0, 1000, views), "t"),
        concurrency_error(ConcurrencyRefusal(conc, 2, views), "t"),
    ]
    for error in errors:
        assert {k: v for k, v in error.headers.items() if k.startswith("x-ratelimit-")} == {
            "x-ratelimit-limit-requests": "60",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "1s",
            "x-ratelimit-limit-tokens": "1000",
            "x-ratelimit-remaining-tokens": "990",
            "x-ratelimit-reset-tokens": "600ms",
        }
    bare = budget_error(BudgetRefusal(budget(), 50, Verdict.EXHAUSTED, Counter(990, 0)), "t")
    assert not any(k.startswith("x-ratelimit-") for k in bare.headers)


def test_headers_show_the_tightest_key_of_each_kind() -> None:
    requests, tokens = tightest(
        (
            (RateKind.REQUESTS, 600, 599, 100),
            (RateKind.REQUESTS, 60, 59, 1000),
            (RateKind.TOKENS, 1000, 990, 600),
        )
    )
    assert dict(ratelimit_headers(requests, tokens)) == {
        b"x-ratelimit-limit-requests": b"60",
        b"x-ratelimit-remaining-requests": b"59",
        b"x-ratelimit-reset-requests": b"1s",
        b"x-ratelimit-limit-tokens": b"1000",
        b"x-ratelimit-remaining-tokens": b"990",
        b"x-ratelimit-reset-tokens": b"600ms",
    }


def test_a_kind_without_a_limit_has_no_headers() -> None:
    assert ratelimit_headers(None, None) == []
    assert [name for name, _ in ratelimit_headers(None, RateView(10, 5, 2500))] == [
        b"x-ratelimit-limit-tokens",
        b"x-ratelimit-remaining-tokens",
        b"x-ratelimit-reset-tokens",
    ]
    assert (
        dict(ratelimit_headers(None, RateView(10, 5, 2500)))[b"x-ratelimit-reset-tokens"] == b"2.5s"
    )


def test_a_reset_of_zero_is_written_as_go_writes_it() -> None:
    """A full bucket resets in "0s", as OpenAI's headers (Go durations) say, not "0ms"."""
    headers = dict(ratelimit_headers(RateView(60, 60, 0), RateView(1000, 1000, 0)))
    assert headers[b"x-ratelimit-reset-requests"] == b"0s"
    assert headers[b"x-ratelimit-reset-tokens"] == b"0s"
    assert dict(ratelimit_headers(None, RateView(10, 5, -3)))[b"x-ratelimit-reset-tokens"] == b"0s"


def test_ratelimit_headers_pick_the_tightest_like_min() -> None:
    """The loop picks what min(key=(remaining, -reset_ms)) picks, first among equals."""
    from itertools import product

    for values in product([(5, 10), (5, 20), (3, 10), (7, 5)], repeat=3):
        for kinds in product([RateKind.REQUESTS, RateKind.TOKENS], repeat=3):
            views = [
                (kind, 100 + i, remaining, reset)
                for i, ((remaining, reset), kind) in enumerate(zip(values, kinds, strict=True))
            ]
            expected: list[tuple[bytes, bytes]] = []
            for kind, name in ((RateKind.REQUESTS, b"requests"), (RateKind.TOKENS, b"tokens")):
                of_kind = [v for v in views if v[0] is kind]
                if of_kind:
                    _, limit, remaining, reset = min(of_kind, key=lambda v: (v[2], -v[3]))
                    expected += [
                        (b"x-ratelimit-limit-" + name, str(limit).encode()),
                        (b"x-ratelimit-remaining-" + name, str(remaining).encode()),
                        (b"x-ratelimit-reset-" + name, f"{reset}ms".encode()),
                    ]
            assert ratelimit_headers(*tightest(views)) == expected


def test_a_request_too_large_is_told_how_to_shrink_even_without_a_cap_of_its_own() -> None:
    """Its estimate holds an output allowance whether or not it set a cap (the team's
    default, or 4096): the advice names every cap field and says so, never "lower" one."""
    too_large = budget_error(BudgetRefusal(budget(), 5000, Verdict.TOO_LARGE, Counter()), "s")
    tpm = RateRule("k", Scope.TEAM, RateKind.TOKENS, 1000)
    over_tpm = rate_error(RateRefusal(tpm, 5000, -1, 1000, 0, (None, None)), "s")
    for error in (too_large, over_tpm):
        assert "Lower max_tokens" not in error.message
        assert "max_tokens, max_completion_tokens or max_output_tokens" in error.message
        assert "without one, the team's default output allowance is reserved" in error.message
