"""Exact prices and costs (gateway/usage/pricing.py): integers, rounded once, half to even."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.usage.pricing import (
    UNKNOWN_PRICES,
    Price,
    PriceSource,
    PriceTable,
    UnitPrices,
    cost_nanousd,
    deployment_prices,
    nano_per_mtok,
    policy_prices,
    table_prices,
    usd_text,
)
from gateway.usage.usage import Usage


def test_prices_that_do_not_add_up_in_binary_floating_point_sum_exactly():
    """0.15 and 0.60 per Mtok are not exact as floats; as nano-USD integers they are."""
    assert 0.15 * 3 != 0.45 and 0.60 * 3 != 1.8 and sum([0.15] * 10) != 1.5  # the trap
    prices = policy_prices(Price(0.15, 0.60))
    assert (prices.input, prices.output) == (150_000_000, 600_000_000)
    one_million_each = cost_nanousd(Usage(1_000_000, 1_000_000), prices)
    assert one_million_each == 750_000_000
    assert usd_text(one_million_each) == "0.750000000"
    # Ten thousand requests of 7 input + 3 output tokens: the sum is exact.
    each = cost_nanousd(Usage(7, 3), prices)
    assert sum(cost_nanousd(Usage(1_000_000, 0), prices) for _ in range(10)) == 1_500_000_000
    assert each == 7 * 150 + 3 * 600
    assert usd_text(each * 10_000) == "0.028500000"


@pytest.mark.parametrize(
    ("usd_per_mtok", "nano"),
    [
        (0.15, 150_000_000),
        (0.1, 100_000_000),
        (2.5, 2_500_000_000),
        (0.000000001, 1),  # nine decimals: exact
        (0.0000000005, 0),  # half a nano: to even (0)
        (0.0000000015, 2),  # one and a half: to even (2)
        (Decimal("0.0000000025"), 2),
        (0, 0),
    ],
)
def test_a_written_price_becomes_nano_usd_per_mtok(usd_per_mtok, nano):
    assert nano_per_mtok(usd_per_mtok) == nano


PRICES = UnitPrices(1, 3, 0, 0, 3, PriceSource.POLICY)  # nano-USD per Mtok: tiny, to round


@pytest.mark.parametrize(
    ("usage", "cost"),
    [
        (Usage(500_000, 0), 0),  # 0.5 → 0 (even)
        (Usage(1_500_000, 0), 2),  # 1.5 → 2 (even)
        (Usage(2_500_000, 0), 2),  # 2.5 → 2 (even)
        (Usage(2_500_001, 0), 3),  # just over half → up
        (Usage(499_999, 0), 0),
        (Usage(0, 500_000), 2),  # 1.5 → 2
        (Usage(300_000, 300_000), 1),  # 0.3 + 0.9 = 1.2: summed first, rounded once → 1
    ],
)
def test_a_cost_is_rounded_once_half_to_even(usage, cost):
    assert cost_nanousd(usage, PRICES) == cost


def test_rounding_each_part_would_differ_from_rounding_once():
    """0.4 + 0.4 + 0.4 nano rounds to 1 once; per part it would be 0."""
    prices = UnitPrices(2, 2, 2, 2, 2, PriceSource.POLICY)
    usage = Usage(400_000, 200_000, 200_000, cache_write_tokens=0, reasoning_tokens=0)
    assert cost_nanousd(usage, prices) == 1  # 0.2*2 + 0.2*2 + 0.2*2 = 1.2


def test_cached_written_and_reasoning_tokens_have_their_own_rates():
    prices = UnitPrices(100, 400, 10, 125, 800, PriceSource.TABLE)
    usage = Usage(
        1_000_000, 1_000_000, 200_000, cache_write_tokens=300_000, reasoning_tokens=250_000
    )
    # 500k plain input, 200k cached, 300k written, 750k plain output, 250k reasoning:
    # 50 + 2 + 37.5 + 300 + 200 = 589.5 nano-USD, rounded once, half to even: 590.
    assert cost_nanousd(usage, prices) == 590


@given(st.integers(0, 10**7), st.integers(0, 10**7), st.integers(0, 10**7), st.integers(0, 10**6))
def test_the_cost_is_the_exact_decimal_cost_rounded_half_even(inp, out, cached, price):
    prices = UnitPrices(price, price * 4, price // 2, price, price * 4, PriceSource.POLICY)
    usage = Usage(inp, out, min(cached, inp))
    exact = (
        Decimal(inp - usage.cached_tokens) * price
        + Decimal(usage.cached_tokens) * (price // 2)
        + Decimal(out) * price * 4
    ) / 10**6
    assert cost_nanousd(usage, prices) == int(exact.to_integral_value(rounding="ROUND_HALF_EVEN"))


def test_cached_counts_larger_than_the_input_are_capped():
    prices = UnitPrices(1_000_000, 0, 0, 0, 0, PriceSource.POLICY)
    assert cost_nanousd(Usage(10, 0, cached_tokens=50), prices) == 0  # all ten are cached


def test_gpt_4o_mini_is_in_the_bundled_table():
    """litellm's bundled file, read without the network: gpt-4o-mini at 0.15 / 0.60."""
    prices = PriceTable().lookup("gpt-4o-mini", "openai")
    assert prices is not None and prices.source is PriceSource.TABLE
    assert (prices.input, prices.output) == (150_000_000, 600_000_000)
    assert prices.cached_input == 75_000_000


def test_an_unknown_model_is_priced_at_zero_and_flagged():
    assert PriceTable().lookup("no-such-model-anywhere", "openai") is None
    assert deployment_prices(None, "no-such-model-anywhere", "openai") is UNKNOWN_PRICES
    assert UNKNOWN_PRICES.source is PriceSource.UNKNOWN


def test_the_policy_price_wins_over_the_table():
    prices = deployment_prices(Price(1.0, 2.0, cached_input_per_mtok=0.5), "gpt-4o-mini", "openai")
    assert (prices.input, prices.output, prices.cached_input) == (10**9, 2 * 10**9, 5 * 10**8)
    assert prices.cache_write == prices.input and prices.source is PriceSource.POLICY


def test_table_lookup_tries_the_provider_prefix_first():
    table = PriceTable(
        {
            "azure/m": {"input_cost_per_token": 2e-6, "output_cost_per_token": 4e-6},
            "m": {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6},
        }
    )
    assert table.lookup("m", "azure").input == 2_000_000_000  # type: ignore[union-attr]
    assert table.lookup("m", "mock").input == 1_000_000_000  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "entry",
    [
        None,
        "x",
        {},
        {"input_cost_per_token": 1e-6},
        {"input_cost_per_token": -1, "output_cost_per_token": 1},
    ],
)
def test_a_table_entry_without_usable_prices_is_unpriced(entry):
    assert table_prices(entry) is None


@given(st.integers(-(10**20), 10**20))
def test_usd_text_is_the_exact_decimal_with_nine_places(nanousd):
    assert usd_text(nanousd) == f"{Decimal(nanousd).scaleb(-9):.9f}"
