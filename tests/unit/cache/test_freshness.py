"""Whether a stored answer may still be served (gateway/cache/freshness.py)."""

from hypothesis import given
from hypothesis import strategies as st

from gateway.cache.freshness import is_fresh


@given(st.integers(-(10**12), 10**12), st.integers(1, 10**7))
def test_fresh_exactly_while_younger_than_the_ttl(age_ms: int, ttl_s: int) -> None:
    assert is_fresh(age_ms, ttl_s) is (max(age_ms, 0) < ttl_s * 1000)


def test_the_edges() -> None:
    assert is_fresh(0, 1) and is_fresh(999, 1) and not is_fresh(1000, 1)
    assert is_fresh(-5_000, 1)  # another replica's clock ahead: as if just stored
