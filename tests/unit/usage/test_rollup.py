"""How ledger rows add up in the daily rollup (gateway/usage/rollup.py): pure functions."""

from __future__ import annotations

from collections import Counter
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.usage.ledger_table import ROLLUP_KEYS, ROLLUP_SUMS
from gateway.usage.pricing import PriceSource, UnitPrices, cost_nanousd
from gateway.usage.report_query import TokenKind
from gateway.usage.rollup import KINDS, daily_rows, first_of_each_id, group_key, token_split
from gateway.usage.usage import Usage

DAY_MS = 86_400_000
tokens = st.integers(0, 2**31 - 1)
small = st.integers(0, 60)


@given(tokens, tokens, tokens, tokens, tokens)
def test_the_split_partitions_input_and_output(inp, out, cached, written, reasoning):
    parts = token_split(inp, out, cached, written, reasoning)
    assert all(part >= 0 for part in parts)
    plain_in, cached_in, write_in, plain_out, thought = parts
    assert plain_in + cached_in + write_in == inp
    assert plain_out + thought == out


@given(small, small, small, small, small, st.lists(st.integers(0, 10**10), min_size=5, max_size=5))
def test_the_split_prices_to_the_rows_cost(inp, out, cached, written, reasoning, unit):
    """Each kind at its own price, rounded once: exactly what the row was charged."""
    prices = UnitPrices(unit[0], unit[3], unit[1], unit[2], unit[4], PriceSource.POLICY)
    parts = token_split(inp, out, cached, written, reasoning)
    femto = sum(p * u for p, u in zip(parts, unit, strict=True))
    usage = Usage(
        inp, out, cached_tokens=cached, cache_write_tokens=written, reasoning_tokens=reasoning
    )
    rounded = (Decimal(femto) / 1_000_000).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    assert cost_nanousd(usage, prices) == int(rounded)


def test_the_kinds_are_the_report_token_kinds_in_order():
    assert tuple(kind.value for kind in TokenKind) == KINDS
    assert [f"priced_{k}" for k in KINDS] == [s for s in ROLLUP_SUMS if s.startswith("priced_")]


def test_a_null_key_is_not_an_empty_or_null_text_key():
    base = ["t", "s", "c", "m", "p", "d", "u", "policy", 1, 2, 3, 4, 5]
    keys = {group_key([value, *base[1:]]) for value in (None, "", "null", "None", "t")}
    assert len(keys) == 5
    assert group_key(base) == group_key(list(base))


row_strategy = st.fixed_dictionaries(
    {
        "id": st.text(min_size=1, max_size=3),
        "at_ms": st.integers(0, 4 * DAY_MS),
        "team": st.sampled_from([None, "", "a", "b"]),
        "subject": st.sampled_from([None, "x"]),
        "client_id": st.sampled_from([None, "c"]),
        "model": st.sampled_from([None, "m1", "m2"]),
        "provider": st.sampled_from([None, "openai"]),
        "deployment": st.sampled_from([None, "openai/x"]),
        "upstream_model": st.sampled_from([None, "x"]),
        "price_source": st.sampled_from([s.value for s in PriceSource]),
        "price_input": st.sampled_from([0, 7]),
        "price_output": st.sampled_from([0, 9]),
        "price_cached_input": st.just(1),
        "price_cache_write": st.just(2),
        "price_reasoning": st.just(3),
        "status": st.sampled_from([200, 400, 429, 502]),
        "input_tokens": small,
        "output_tokens": small,
        "cached_tokens": small,
        "cache_write_tokens": small,
        "reasoning_tokens": small,
        "tokens_estimated": st.booleans(),
        "cost_nanousd": st.integers(0, 10**12),
        "cache": st.sampled_from([None, "hit", "miss", "bypass"]),
    }
)


def _expected(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], Counter[str]]:
    found: dict[tuple[Any, ...], Counter[str]] = {}
    for r in rows:
        key = (r["at_ms"] // DAY_MS, *(r[k] for k in ROLLUP_KEYS))
        sums = found.setdefault(key, Counter())
        split = token_split(
            r["input_tokens"],
            r["output_tokens"],
            r["cached_tokens"],
            r["cache_write_tokens"],
            r["reasoning_tokens"],
        )
        sums.update(
            requests=1,
            errors=int(r["status"] >= 400),
            requests_with_tokens=int(r["input_tokens"] + r["output_tokens"] > 0),
            input_tokens=r["input_tokens"],
            output_tokens=r["output_tokens"],
            cached_tokens=r["cached_tokens"],
            cache_write_tokens=r["cache_write_tokens"],
            reasoning_tokens=r["reasoning_tokens"],
            cost_nanousd=r["cost_nanousd"],
            **{f"priced_{k}": v for k, v in zip(KINDS, split, strict=True)},
            **{
                f"estimated_{k}": v if r["tokens_estimated"] else 0
                for k, v in zip(KINDS, split, strict=True)
            },
        )
    return found


@given(st.lists(row_strategy, max_size=40))
def test_the_rollup_rows_are_the_sums_per_day_and_key(rows):
    daily = daily_rows(rows)
    assert [(d["day"], d["group_key"]) for d in daily] == sorted(
        (d["day"], d["group_key"]) for d in daily
    )
    got = {(d["day"], *(d[k] for k in ROLLUP_KEYS)): d for d in daily}
    assert len(got) == len(daily)  # one rollup row per day and key
    expected = _expected(rows)
    assert set(got) == set(expected)
    for key, sums in expected.items():
        assert {name: got[key][name] for name in ROLLUP_SUMS} == {
            name: sums[name] for name in ROLLUP_SUMS
        }
        assert got[key]["group_key"] == group_key(key[1:])


def test_first_of_each_id_counts_a_repeated_id_once_and_skips_ids_not_inserted():
    rows = [{"id": "a", "n": 1}, {"id": "b", "n": 2}, {"id": "a", "n": 3}, {"id": "c", "n": 4}]
    assert first_of_each_id(rows, ["a", "c"]) == [{"id": "a", "n": 1}, {"id": "c", "n": 4}]
    assert first_of_each_id(rows, []) == []
