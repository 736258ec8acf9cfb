"""The FOCUS 1.3 export: lines add up to the ledger exactly; columns as FOCUS requires."""

import csv
import io
import json
import re
import unicodedata
from dataclasses import replace
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from gateway.usage.focus import COLUMNS, focus_csv, line_costs
from gateway.usage.pricing import PriceSource, UnitPrices, cost_nanousd
from gateway.usage.report_query import ChargeKey, ChargeSums, TokenKind
from gateway.usage.report_request import GroupKey, Month
from gateway.usage.usage import Usage

JANUARY = Month(2026, 1)
DAY = JANUARY.start_ms // 86_400_000 + 4
# FOCUS 1.3 columns that MUST be present (REFERENCE §4.2), deprecated ones included.
MANDATORY = {
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ServiceCategory",
    "ServiceName",
    "ServiceProviderName",
    "HostProviderName",
    "ProviderName",
    "PublisherName",
}
CONDITIONAL = {
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedUnitPrice",
    "ListUnitPrice",
    "PricingCategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceId",
    "SkuPriceDetails",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "Tags",
}
RECOMMENDED = {"ChargeFrequency", "ServiceSubcategory"}
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T00:00:00Z$")


def key(prices: UnitPrices, team="search", day=DAY, extra=(), cache=None) -> ChargeKey:
    return ChargeKey(
        day=day,
        team=team,
        model="small",
        provider="openai",
        deployment="openai/gpt-4o-mini",
        upstream_model="gpt-4o-mini",
        price_source=prices.source.value,
        price_input=prices.input,
        price_cached_input=prices.cached_input,
        price_cache_write=prices.cache_write,
        price_output=prices.output,
        price_reasoning=prices.reasoning,
        extra=extra,
        cache=cache,
    )


def sums_of(usages: list[Usage], prices: UnitPrices, estimated=()) -> ChargeSums:
    """What the ledger query returns for these rows, split as `cost_nanousd` splits them."""
    sums = ChargeSums(requests=len(usages))
    for n, u in enumerate(usages):
        cached = min(u.cached_tokens, u.input_tokens)
        written = min(u.cache_write_tokens, u.input_tokens - cached)
        reasoning = min(u.reasoning_tokens, u.output_tokens)
        split = {
            TokenKind.INPUT: u.input_tokens - cached - written,
            TokenKind.CACHED_INPUT: cached,
            TokenKind.CACHE_WRITE: written,
            TokenKind.OUTPUT: u.output_tokens - reasoning,
            TokenKind.REASONING: reasoning,
        }
        for kind, quantity in split.items():
            sums.tokens[kind] += quantity
            if n in estimated:
                sums.estimated[kind] += quantity
        sums.cost_nanousd += cost_nanousd(u, prices)
    return sums


prices_st = st.builds(
    UnitPrices,
    st.integers(0, 10**11),
    st.integers(0, 10**11),
    st.integers(0, 10**11),
    st.integers(0, 10**11),
    st.integers(0, 10**11),
    st.just(PriceSource.POLICY),
)
usage_st = st.builds(
    Usage,
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    cached_tokens=st.integers(0, 10**6),
    cache_write_tokens=st.integers(0, 10**6),
    reasoning_tokens=st.integers(0, 10**6),
)


@given(prices_st, st.lists(usage_st, min_size=1, max_size=30))
def test_token_kind_lines_add_up_to_the_rows_costs_exactly(prices, usages):
    """Whatever the prices and tokens, a group's lines sum to its rows' own costs to the nano-USD."""
    sums = sums_of(usages, prices)
    lines = line_costs(key(prices), sums)
    assert sum(cost for _, cost in lines) == sums.cost_nanousd
    # Each line is within the group's accumulated rounding of its exact cost.
    for kind, cost in lines:
        exact = Decimal(sums.tokens[kind] * key(prices).unit_price(kind)) / 10**6
        assert abs(cost - exact) <= len(usages) + 1


def test_the_residual_goes_on_the_costliest_line():
    """Three rows of 1 input + 1 output token at 0.1 + 0.2 nano-USD each: rows round to 0,
    the lines (0.3 and 0.6 exact) round to 0 and 1; the residual -1 lands on output."""
    prices = UnitPrices(100_000, 200_000, 100_000, 100_000, 200_000, PriceSource.POLICY)
    sums = sums_of([Usage(1, 1)] * 3, prices)
    assert sums.cost_nanousd == 0
    assert line_costs(key(prices), sums) == [(TokenKind.INPUT, 0), (TokenKind.OUTPUT, 0)]


def test_a_group_without_tokens_keeps_its_requests_on_one_zero_line():
    """Refusals cost nothing but are still counted in x_RequestCount."""
    prices = UnitPrices(0, 0, 0, 0, 0, PriceSource.UNKNOWN)
    sums = ChargeSums(requests=2, errors=2)
    assert line_costs(key(prices), sums) == [(TokenKind.INPUT, 0)]
    rows = list(csv.DictReader(io.StringIO(focus_csv(JANUARY, {key(prices): sums}, ()).decode())))
    assert [(r["x_RequestCount"], r["x_ErrorCount"], r["BilledCost"]) for r in rows] == [
        ("2", "2", "0.000000000")
    ]


def parse(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode(), newline="")))


def test_focus_columns_values_and_formats():
    """Every mandatory and the used conditional FOCUS columns; custom ones prefixed x_;
    dates ISO 8601 UTC; one line per token kind with tokens; costs add up."""
    prices = UnitPrices(
        2_500_000_000,
        10_000_000_000,
        1_250_000_000,
        2_500_000_000,
        10_000_000_000,
        PriceSource.TABLE,
    )
    sums = sums_of(
        [Usage(1_000_000, 2_000, cached_tokens=400_000), Usage(10, 5)], prices, estimated={1}
    )
    data = focus_csv(JANUARY, {key(prices): sums}, ())
    assert data.startswith(",".join(COLUMNS).encode() + b"\r\n")
    header = data.split(b"\r\n")[0].decode().split(",")
    assert set(header) >= MANDATORY | CONDITIONAL
    assert all(
        name.startswith("x_") for name in set(header) - MANDATORY - CONDITIONAL - RECOMMENDED
    )
    rows = parse(data)
    assert [r["SkuMeter"] for r in rows] == ["Input Tokens", "Cached Input Tokens", "Output Tokens"]
    first = rows[0]
    assert first["BillingPeriodStart"] == "2026-01-01T00:00:00Z"
    assert first["BillingPeriodEnd"] == "2026-02-01T00:00:00Z"
    assert (first["ChargePeriodStart"], first["ChargePeriodEnd"]) == (
        "2026-01-05T00:00:00Z",
        "2026-01-06T00:00:00Z",
    )
    for row in rows:
        assert all(
            ISO.match(row[c])
            for c in (
                "BillingPeriodStart",
                "BillingPeriodEnd",
                "ChargePeriodStart",
                "ChargePeriodEnd",
            )
        )
        assert row["BilledCost"] == row["EffectiveCost"] == row["ListCost"] == row["ContractedCost"]
        assert row["ListUnitPrice"] == row["ContractedUnitPrice"]
        assert (row["ChargeCategory"], row["ChargeClass"], row["BillingCurrency"]) == (
            "Usage",
            "",
            "USD",
        )
        assert (row["ConsumedUnit"], row["PricingUnit"]) == ("Tokens", "1000000 Tokens")
        assert Decimal(row["PricingQuantity"]) * 10**6 == int(row["ConsumedQuantity"])
        assert (row["SubAccountId"], row["SubAccountName"], row["SubAccountType"]) == (
            "search",
            "search",
            "Team",
        )
        assert (row["ResourceId"], row["ServiceProviderName"]) == ("openai/gpt-4o-mini", "openai")
        assert json.loads(row["Tags"]) == {"team": "search", "model": "small"}
        assert json.loads(row["SkuPriceDetails"])["ModelId"] == "gpt-4o-mini"
        assert row["SkuPriceId"].startswith(row["SkuId"] + ":")
    assert rows[0]["SkuId"] == "openai/gpt-4o-mini:input"
    assert json.loads(rows[1]["SkuPriceDetails"])["CacheAction"] == "Read"
    assert [r["ConsumedQuantity"] for r in rows] == ["600010", "400000", "2005"]
    assert [r["x_EstimatedTokens"] for r in rows] == ["10", "0", "5"]
    assert [r["x_RequestCount"] for r in rows] == ["2", "0", "0"]
    assert sum(Decimal(r["BilledCost"]) for r in rows) == Decimal(sums.cost_nanousd).scaleb(-9)
    assert rows[0]["ListUnitPrice"] == "2.500000000"  # USD per million tokens


def test_focus_is_deterministic_and_sorted_whatever_the_input_order():
    prices = UnitPrices(1, 2, 1, 1, 2, PriceSource.POLICY)
    charges = {
        key(prices, team=t, day=DAY + d): ChargeSums(requests=1, tokens=dict.fromkeys(TokenKind, 5))
        for t in ("b", "a")
        for d in (1, 0)
    }
    data = focus_csv(JANUARY, charges, ())
    assert data == focus_csv(JANUARY, dict(reversed(list(charges.items()))), ())
    rows = parse(data)
    order = [
        (r["ChargePeriodStart"], r["SubAccountId"]) for r in rows if r["SkuMeter"] == "Input Tokens"
    ]
    assert order == sorted(order)


def test_extra_keys_become_x_columns():
    """`--group-by ...,client_id,subject` splits lines and names them in x_ columns."""
    prices = UnitPrices(1, 2, 1, 1, 2, PriceSource.POLICY)
    sums = ChargeSums(requests=1, tokens={**dict.fromkeys(TokenKind, 0), TokenKind.INPUT: 3})
    data = focus_csv(
        JANUARY, {key(prices, extra=("c-1", None)): sums}, (GroupKey.CLIENT, GroupKey.SUBJECT)
    )
    (row,) = parse(data)
    assert (row["x_ClientId"], row["x_Subject"]) == ("c-1", "")


def test_cache_hit_lines_say_they_were_served_from_the_cache():
    """A hit's tokens (saved, cost 0) are lines of their own: x_CacheStatus hit and a
    ChargeDescription that says so; other lines carry their status or nothing."""
    free = UnitPrices(0, 0, 0, 0, 0, PriceSource.NONE)
    prices = UnitPrices(1, 2, 1, 1, 2, PriceSource.POLICY)
    sums = ChargeSums(requests=1, tokens={**dict.fromkeys(TokenKind, 0), TokenKind.INPUT: 3})
    charges = {key(free, cache="hit"): sums, key(prices, cache="miss"): sums, key(prices): sums}
    rows = parse(focus_csv(JANUARY, charges, ()))
    assert [(r["x_CacheStatus"], r["ChargeDescription"]) for r in rows] == [
        ("", "Input Tokens of openai/gpt-4o-mini"),
        ("hit", "Input Tokens of openai/gpt-4o-mini, served from the gateway cache, not billed"),
        ("miss", "Input Tokens of openai/gpt-4o-mini"),
    ]


def test_provider_columns_name_the_vendor_of_each_provider_type():
    """ServiceProviderName, HostProviderName and ProviderName say the vendor of the key's
    type, PublisherName the model developer; the key stays in ResourceId."""
    prices = UnitPrices(1, 2, 1, 1, 2, PriceSource.POLICY)
    sums = ChargeSums(requests=1, tokens=dict.fromkeys(TokenKind, 5))
    types = {
        "openai": "openai",
        "bedrock-us": "bedrock",
        "vllm": "openai-compatible",
        "az": "azure",
        "odd": "a-type-of-the-future",
    }
    expected = {
        "openai": ("OpenAI", "OpenAI"),
        "bedrock-us": ("AWS", "AWS"),
        "vllm": ("Internal", "Internal"),
        "az": ("Microsoft", "OpenAI"),
        "odd": ("odd", "odd"),
        "unlisted": ("unlisted", "unlisted"),
    }
    for provider, (vendor, publisher) in expected.items():
        charge = replace(key(prices), provider=provider, deployment=f"{provider}/m")
        rows = parse(focus_csv(JANUARY, {charge: sums}, (), types))
        for row in rows:
            assert row["ServiceProviderName"] == row["HostProviderName"] == vendor
            assert (row["ProviderName"], row["PublisherName"]) == (vendor, publisher)
            assert row["ResourceId"] == f"{provider}/m"
            assert row["InvoiceIssuerName"] == "LLM Gateway"


def test_caller_text_with_controls_is_escaped_and_tags_stay_json():
    """A model alias holding an ESC sequence, DEL, C1, a bidi override, a line separator and a
    tag character is shown escaped in every cell, one line per FOCUS line; Tags and
    SkuPriceDetails escape them the JSON way, so they still read back as the ledger's text."""
    model = "odd\x1b[1A\r\x1b[2K\x7f\x85\u202e\u2028\U000e0041"
    team = "\u200b=HYPERLINK(1)"
    free = UnitPrices(0, 0, 0, 0, 0, PriceSource.NONE)
    charge = replace(key(free, team=team), model=model, upstream_model=model, deployment=None)
    data = focus_csv(JANUARY, {charge: ChargeSums(requests=1, errors=1)}, ())
    assert len(data.split(b"\r\n")) == 3  # the header, one line, the end
    (row,) = parse(data)
    for column, cell in row.items():
        assert not any(unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"} for c in cell), column
    assert row["x_ModelAlias"] == "odd\\x1b[1A\\r\\x1b[2K\\x7f\\x85\\u202e\\u2028\\U000e0041"
    assert row["SubAccountId"] == "\\u200b=HYPERLINK(1)"  # a backslash first: no formula
    assert json.loads(row["Tags"]) == {"team": team, "model": model}
    assert json.loads(row["SkuPriceDetails"])["ModelId"] == model
