"""Cache-Control parsing and what is cacheable (gateway/cache/rules.py)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.cache.rules import CacheMode, Uncacheable, cache_mode, directives, uncacheable


@pytest.mark.parametrize(
    ("values", "mode"),
    [
        ([], CacheMode.USE),
        ([""], CacheMode.USE),
        (["max-age=60"], CacheMode.USE),
        (["no-cache"], CacheMode.REFRESH),
        (["No-Cache"], CacheMode.REFRESH),
        (["  no-cache  "], CacheMode.REFRESH),
        (["no-store"], CacheMode.BYPASS),
        (["NO-STORE"], CacheMode.BYPASS),
        (["no-cache, no-store"], CacheMode.BYPASS),
        (["no-store,no-cache"], CacheMode.BYPASS),
        (["no-cache", "no-store"], CacheMode.BYPASS),  # two header lines are one list
        (["max-age=0, no-cache"], CacheMode.REFRESH),
        (['foo="no-store, x", max-age=5'], CacheMode.USE),  # inside a quoted value: not a directive
        (['foo="a\\"b", no-cache'], CacheMode.REFRESH),
        (['no-cache="set-cookie"'], CacheMode.REFRESH),
        (["no-cachex"], CacheMode.USE),
        (["xno-store"], CacheMode.USE),
        (["no-cache;x, no-store"], CacheMode.BYPASS),  # junk skipped up to the next comma
        ([",,, ,no-store"], CacheMode.BYPASS),
    ],
)
def test_cache_control_reads_as_http_caches_read_it(values: list[str], mode: CacheMode) -> None:
    assert cache_mode(values) == mode


@given(st.lists(st.text(max_size=40), max_size=4))
def test_any_header_value_parses_without_raising(values: list[str]) -> None:
    """A client's arbitrary Cache-Control never breaks a request."""
    assert cache_mode(values) in CacheMode


@given(st.lists(st.sampled_from(["no-cache", "no-store", "max-age=0", "private", 'x="1,2"'])))
def test_no_store_anywhere_wins(names: list[str]) -> None:
    values = [", ".join(names)]
    if "no-store" in names:
        assert cache_mode(values) == CacheMode.BYPASS
    elif "no-cache" in names:
        assert cache_mode(values) == CacheMode.REFRESH
    else:
        assert cache_mode(values) == CacheMode.USE


def test_directive_names_are_lowercased() -> None:
    assert directives(["No-Store, MAX-AGE=3"]) == {"no-store", "max-age"}


@pytest.mark.parametrize(
    ("endpoint", "body", "why"),
    [
        ("chat", {"messages": []}, None),
        ("chat", {"messages": [], "n": 1}, None),
        ("chat", {"messages": [], "n": None}, None),
        ("completions", {"prompt": "x"}, None),
        ("embeddings", {"input": "x"}, None),
        ("chat", {"messages": [], "n": 2}, Uncacheable.SEVERAL_CHOICES),
        ("completions", {"prompt": "x", "n": 3}, Uncacheable.SEVERAL_CHOICES),
        ("chat", {"messages": [], "n": True}, Uncacheable.SEVERAL_CHOICES),
        ("chat", {"messages": [], "n": "1"}, Uncacheable.SEVERAL_CHOICES),
        ("chat", {"messages": [], "n": 1.0}, Uncacheable.SEVERAL_CHOICES),
        ("responses", {"input": "x"}, Uncacheable.ENDPOINT),
    ],
)
def test_what_is_cacheable(endpoint: str, body: dict[str, object], why: Uncacheable | None) -> None:
    """n > 1 asks for distinct samples; the Responses API keeps state upstream."""
    assert uncacheable(endpoint, body) == why
