"""Cache-Control request directives and Pragma, as HTTP caches read them
(gateway/cache/directives.py)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.cache.directives import (
    MAX_DELTA_S,
    NONE,
    RequestDirectives,
    cache_control_of,
    delta_seconds,
    directive_names,
    read_directives,
)
from gateway.cache.rules import CacheMode


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
        (["max-age=0"], CacheMode.REFRESH),  # nothing stored is younger than 0 s
        (["MAX-AGE=0"], CacheMode.REFRESH),
        (['max-age="0"'], CacheMode.REFRESH),
        (["max-age=00"], CacheMode.REFRESH),
        (["max-age=0, no-store"], CacheMode.BYPASS),
        (["max-age=1"], CacheMode.USE),
        (["max-age=abc"], CacheMode.USE),
        (["max-age=-0"], CacheMode.USE),  # not delta-seconds: absent
        (["min-fresh=0"], CacheMode.USE),
        (["only-if-cached"], CacheMode.USE),
        (["max-stale"], CacheMode.USE),
        (['foo="no-store, x", max-age=5'], CacheMode.USE),  # inside a quoted value: not a directive
        (['foo="a\\"b", no-cache'], CacheMode.REFRESH),
        (['no-cache="set-cookie"'], CacheMode.REFRESH),
        (["no-cachex"], CacheMode.USE),
        (["xno-store"], CacheMode.USE),
        (["no-cache;x, no-store"], CacheMode.BYPASS),  # junk skipped up to the next comma
        ([",,, ,no-store"], CacheMode.BYPASS),
    ],
)
def test_the_mode_a_request_allows(values: list[str], mode: CacheMode) -> None:
    assert read_directives(values).mode == mode


@pytest.mark.parametrize(
    ("values", "read"),
    [
        ([], NONE),
        ([""], NONE),
        (["private, max-stale=60, stale-if-error=5, foo"], NONE),  # nothing the gateway reads
        (["max-age=60"], RequestDirectives(max_age_s=60)),
        (["Max-Age=60"], RequestDirectives(max_age_s=60)),
        (['max-age="60"'], RequestDirectives(max_age_s=60)),  # recipients accept the quoted form
        (["max-age = 60"], RequestDirectives(max_age_s=60)),
        (["max-age=0"], RequestDirectives(max_age_s=0)),
        (["max-age=007"], RequestDirectives(max_age_s=7)),
        (["min-fresh=30"], RequestDirectives(min_fresh_s=30)),
        (["MIN-FRESH=30"], RequestDirectives(min_fresh_s=30)),
        (["only-if-cached"], RequestDirectives(only_if_cached=True)),
        (["Only-If-Cached"], RequestDirectives(only_if_cached=True)),
        (["no-cache"], RequestDirectives(no_cache=True)),
        (["no-store"], RequestDirectives(no_store=True)),
        (
            ["max-age=5, min-fresh=2, only-if-cached"],
            RequestDirectives(only_if_cached=True, max_age_s=5, min_fresh_s=2),
        ),
        (
            ["max-age=5", "min-fresh=2", "only-if-cached"],
            RequestDirectives(only_if_cached=True, max_age_s=5, min_fresh_s=2),
        ),
        # malformed arguments: the directive is absent (RFC 9111 §1.2.2, §5.2)
        (["max-age=abc"], NONE),
        (["max-age=-1"], NONE),
        (["max-age=+5"], NONE),
        (["max-age=1.5"], NONE),
        (["max-age=1e3"], NONE),
        (["max-age=1_000"], NONE),
        (["max-age=\u0663"], NONE),  # an Arabic-Indic three: a digit to Python, not to HTTP
        (["max-age="], NONE),
        (["max-age"], NONE),
        (['max-age=""'], NONE),
        (['max-age=" 5"'], NONE),
        (["max-age=5 6"], NONE),  # not one directive: skipped
        (["min-fresh=abc"], NONE),
        (["min-fresh=-3"], NONE),
        (["max-age=abc, no-cache"], RequestDirectives(no_cache=True)),
        (["max-age=abc, max-age=9"], RequestDirectives(max_age_s=9)),
        # given twice: the strictest (the client set both conditions)
        (["max-age=60, max-age=5"], RequestDirectives(max_age_s=5)),
        (["max-age=5", "max-age=60"], RequestDirectives(max_age_s=5)),
        (["min-fresh=5, min-fresh=60"], RequestDirectives(min_fresh_s=60)),
        # beyond what any cache holds: 2^31 (RFC 9111 §1.2.2)
        (["max-age=99999999999999999999999"], RequestDirectives(max_age_s=MAX_DELTA_S)),
        (["min-fresh=2147483649"], RequestDirectives(min_fresh_s=MAX_DELTA_S)),
    ],
)
def test_directives_as_read(values: list[str], read: RequestDirectives) -> None:
    assert read_directives(values) == read


def test_directive_names_are_lowercased() -> None:
    assert directive_names(["No-Store, MAX-AGE=3"]) == {"no-store", "max-age"}


@pytest.mark.parametrize(
    ("argument", "seconds"),
    [
        (None, None),
        ("", None),
        ("0", 0),
        ("42", 42),
        ("2147483648", MAX_DELTA_S),
        ("2147483647", MAX_DELTA_S - 1),
        ("-1", None),
        (" 1", None),
        ("1 ", None),
        ("0x10", None),
    ],
)
def test_delta_seconds(argument: str | None, seconds: int | None) -> None:
    assert delta_seconds(argument) == seconds


@pytest.mark.parametrize(
    ("cache_control", "pragma", "read"),
    [
        ((), (), ()),
        ((), ("no-cache",), ("no-cache",)),
        ((), ("No-Cache",), ("no-cache",)),
        ((), ("foo, no-cache",), ("no-cache",)),
        ((), ("foo", "no-cache"), ("no-cache",)),
        ((), ("x-no-cache",), ()),
        ((), ("",), ()),
        # any Cache-Control header: Pragma is ignored (RFC 9111 §5.4)
        (("max-age=60",), ("no-cache",), ("max-age=60",)),
        (("only-if-cached",), ("no-cache",), ("only-if-cached",)),
        (("foo",), ("no-cache",), ("foo",)),
        (("no-store",), (), ("no-store",)),
    ],
)
def test_pragma_no_cache_counts_only_without_cache_control(
    cache_control: tuple[str, ...], pragma: tuple[str, ...], read: tuple[str, ...]
) -> None:
    assert cache_control_of(cache_control, pragma) == read


# --- properties ----------------------------------------------------------------

_KNOWN = st.sampled_from(
    [
        "no-cache",
        "no-store",
        "only-if-cached",
        "max-stale",
        "max-stale=5",
        "private",
        'x="a, no-store"',
        "no-transform",
    ]
)
_TIMED = st.builds(
    "{}={}".format,
    st.sampled_from(["max-age", "min-fresh"]),
    st.integers(0, 10**12).map(str) | st.sampled_from(["abc", "-1", "1.5", "", '"7"']),
)
_DIRECTIVES = st.lists(_KNOWN | _TIMED, max_size=6)


@given(st.lists(st.text(max_size=40), max_size=4))
def test_any_header_value_parses_without_raising(values: list[str]) -> None:
    """A client's arbitrary Cache-Control never breaks a request, and reads as delta-
    seconds within 0..2^31 or as absent."""
    read = read_directives(values)
    assert read.mode in CacheMode
    for seconds in (read.max_age_s, read.min_fresh_s):
        assert seconds is None or 0 <= seconds <= MAX_DELTA_S


@given(_DIRECTIVES, st.randoms())
def test_lines_order_and_case_do_not_matter(directives: list[str], random) -> None:
    """One comma list or one header line each, in any order, names in any case: the same."""
    one_line = read_directives([", ".join(directives)])
    assert read_directives(directives) == one_line
    shuffled = list(directives)
    random.shuffle(shuffled)
    assert read_directives(shuffled) == one_line
    shouted = [d.split("=")[0].upper() + d[len(d.split("=")[0]) :] for d in directives]
    assert read_directives(shouted) == one_line


@given(_DIRECTIVES, st.sampled_from(["max-age=abc", "min-fresh=-1", "max-age=", "max-age"]))
def test_a_malformed_directive_is_as_if_absent(directives: list[str], junk: str) -> None:
    assert read_directives([*directives, junk]) == read_directives(directives)


@given(_DIRECTIVES)
def test_no_store_wins_then_no_cache_or_max_age_zero(directives: list[str]) -> None:
    read = read_directives(directives)
    if "no-store" in directives:
        assert read.mode is CacheMode.BYPASS
    elif "no-cache" in directives or read.max_age_s == 0:
        assert read.mode is CacheMode.REFRESH
    else:
        assert read.mode is CacheMode.USE


@given(_DIRECTIVES, st.lists(st.sampled_from(["no-cache", "x", ""]), max_size=2))
def test_pragma_is_ignored_beside_any_cache_control(
    directives: list[str], pragma: list[str]
) -> None:
    values = [", ".join(directives)]
    assert cache_control_of(values, pragma) == tuple(values)
