"""Whether a stored answer may be served: ttl and the request's directives
(gateway/cache/freshness.py)."""

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.cache.directives import NONE, RequestDirectives, read_directives
from gateway.cache.freshness import Verdict, decide, is_fresh, is_servable
from gateway.cache.rules import CacheMode

SERVE, REFRESH, REFUSE = Verdict.SERVE, Verdict.REFRESH, Verdict.REFUSE


@given(st.integers(-(10**12), 10**12), st.integers(1, 10**7))
def test_fresh_exactly_while_younger_than_the_ttl(age_ms: int, ttl_s: int) -> None:
    assert is_fresh(age_ms, ttl_s) is (max(age_ms, 0) < ttl_s * 1000)


def test_the_edges() -> None:
    assert is_fresh(0, 1) and is_fresh(999, 1) and not is_fresh(1000, 1)
    assert is_fresh(-5_000, 1)  # another replica's clock ahead: as if just stored


# (Cache-Control, the entry's age in ms or None for nothing stored, ttl_s, verdict)
CASES = [
    # no directive: the ttl alone
    ("", None, 60, REFRESH),
    ("", 0, 60, SERVE),
    ("", 59_999, 60, SERVE),
    ("", 60_000, 60, REFRESH),
    ("", -5_000, 60, SERVE),
    # no-cache, no-store: never served; the upstream answers
    ("no-cache", 0, 60, REFRESH),
    ("no-store", 0, 60, REFRESH),
    ("no-cache", None, 60, REFRESH),
    # max-age=N: age <= N s
    ("max-age=5", 0, 60, SERVE),
    ("max-age=5", 5_000, 60, SERVE),
    ("max-age=5", 5_001, 60, REFRESH),
    ("max-age=5", -1_000, 60, SERVE),
    ("max-age=5", None, 60, REFRESH),
    ("max-age=0", 0, 60, REFRESH),  # always fetched fresh, like no-cache
    ("max-age=0", -1, 60, REFRESH),
    ("max-age=3600", 59_999, 60, SERVE),  # never beyond the ttl
    ("max-age=3600", 60_000, 60, REFRESH),
    ("max-age=abc", 30_000, 60, SERVE),  # malformed: absent
    ("max-age=-1", 30_000, 60, SERVE),
    ("max-age=60, max-age=5", 6_000, 60, REFRESH),  # the strictest of two
    # min-fresh=N: age + N s <= ttl
    ("min-fresh=10", 0, 60, SERVE),
    ("min-fresh=10", 50_000, 60, SERVE),
    ("min-fresh=10", 50_001, 60, REFRESH),
    ("min-fresh=0", 59_999, 60, SERVE),
    ("min-fresh=60", 0, 60, SERVE),
    ("min-fresh=60", 1, 60, REFRESH),
    ("min-fresh=61", 0, 60, REFRESH),  # asks for more than the ttl gives: never
    ("min-fresh=abc", 59_000, 60, SERVE),
    ("max-age=30, min-fresh=20", 30_000, 60, SERVE),
    ("max-age=30, min-fresh=40", 20_001, 60, REFRESH),
    ("max-age=30, min-fresh=20", 30_001, 60, REFRESH),
    # max-stale: ignored, nothing past the ttl is ever served
    ("max-stale", 60_000, 60, REFRESH),
    ("max-stale=3600", 61_000, 60, REFRESH),
    ("max-stale=3600", 1_000, 60, SERVE),
    # only-if-cached: a servable entry, else refused (never the upstream)
    ("only-if-cached", 0, 60, SERVE),
    ("only-if-cached", None, 60, REFUSE),
    ("only-if-cached", 60_000, 60, REFUSE),
    ("only-if-cached, max-age=5", 6_000, 60, REFUSE),
    ("only-if-cached, max-age=5", 4_000, 60, SERVE),
    ("only-if-cached, min-fresh=10", 50_001, 60, REFUSE),
    ("only-if-cached, max-age=0", 0, 60, REFUSE),
    ("only-if-cached, no-cache", 0, 60, REFUSE),
    ("only-if-cached, no-store", 0, 60, REFUSE),
    ("ONLY-IF-CACHED", None, 60, REFUSE),
]


@pytest.mark.parametrize(("header", "age_ms", "ttl_s", "verdict"), CASES)
def test_what_a_request_is_served(
    header: str, age_ms: int | None, ttl_s: int, verdict: Verdict
) -> None:
    assert decide(read_directives([header]), age_ms, ttl_s) is verdict


# --- properties ----------------------------------------------------------------

_SECONDS = st.none() | st.integers(0, 10**6)
_REQUESTS = st.builds(
    RequestDirectives,
    no_store=st.booleans(),
    no_cache=st.booleans(),
    only_if_cached=st.booleans(),
    max_age_s=_SECONDS,
    min_fresh_s=_SECONDS,
)
_AGES = st.integers(-(10**9), 10**9)
_TTLS = st.integers(1, 10**6)


@given(_REQUESTS, _AGES, _TTLS)
def test_served_exactly_when_every_condition_holds(
    asked: RequestDirectives, age_ms: int, ttl_s: int
) -> None:
    """A stored entry is served iff the request lets the cache answer at all, it is fresh,
    no older than max-age and fresh for min-fresh more; else the upstream answers, unless
    the request said only-if-cached."""
    age = max(0, age_ms)
    served = (
        not asked.no_store
        and not asked.no_cache
        and asked.max_age_s != 0
        and age < ttl_s * 1000
        and (asked.max_age_s is None or age <= asked.max_age_s * 1000)
        and (asked.min_fresh_s is None or age + asked.min_fresh_s * 1000 <= ttl_s * 1000)
    )
    verdict = decide(asked, age_ms, ttl_s)
    assert is_servable(asked, age_ms, ttl_s) is served
    if served:
        assert verdict is SERVE
    else:
        assert verdict is (REFUSE if asked.only_if_cached else REFRESH)


@given(_REQUESTS, _TTLS)
def test_nothing_stored_is_never_served(asked: RequestDirectives, ttl_s: int) -> None:
    assert decide(asked, None, ttl_s) is (REFUSE if asked.only_if_cached else REFRESH)


@given(_REQUESTS, _AGES, _AGES, _TTLS)
def test_an_older_entry_is_never_more_servable(
    asked: RequestDirectives, one: int, two: int, ttl_s: int
) -> None:
    younger, older = sorted((one, two))
    if is_servable(asked, older, ttl_s):
        assert is_servable(asked, younger, ttl_s)


@given(_REQUESTS, _AGES, _TTLS, st.sampled_from(["max_age_s", "min_fresh_s"]), _SECONDS)
def test_a_stricter_request_serves_no_more(
    asked: RequestDirectives, age_ms: int, ttl_s: int, field: str, seconds: int | None
) -> None:
    """A smaller max-age, a larger min-fresh, or any of no-cache, no-store, only-if-cached
    added never turns a refresh into a hit."""
    current = getattr(asked, field)
    if seconds is None or current is None:
        return
    stricter = min(current, seconds) if field == "max_age_s" else max(current, seconds)
    tightened = [
        replace(asked, **{field: stricter}),
        replace(asked, no_cache=True),
        replace(asked, no_store=True),
        replace(asked, only_if_cached=True),
    ]
    for tight in tightened:
        if is_servable(tight, age_ms, ttl_s):
            assert is_servable(asked, age_ms, ttl_s)


@given(_REQUESTS, _AGES, _TTLS)
def test_a_request_that_does_not_look_up_loses_nothing(
    asked: RequestDirectives, age_ms: int, ttl_s: int
) -> None:
    """no-cache, no-store and max-age=0 skip the lookup: what is stored would not have
    been served anyway, so the verdict is the same as for nothing stored."""
    if asked.mode is not CacheMode.USE:
        assert decide(asked, age_ms, ttl_s) is decide(asked, None, ttl_s)


@given(_AGES, _TTLS, st.integers(0, 10**6))
def test_a_max_age_at_or_past_the_ttl_changes_nothing(age_ms: int, ttl_s: int, extra: int) -> None:
    asked = RequestDirectives(max_age_s=ttl_s + extra)
    assert decide(asked, age_ms, ttl_s) is decide(NONE, age_ms, ttl_s)


@given(_AGES, _TTLS)
def test_max_age_zero_always_refreshes(age_ms: int, ttl_s: int) -> None:
    assert decide(RequestDirectives(max_age_s=0), age_ms, ttl_s) is REFRESH
    assert decide(RequestDirectives(max_age_s=0, only_if_cached=True), age_ms, ttl_s) is REFUSE
