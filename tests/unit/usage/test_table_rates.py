"""Table prices as the provider bills them (pricing.py, table_rates.py): the answer's
service tier, audio tokens, long-context steps; checked against litellm's own cost code
(`generic_cost_per_token`) on the bundled table's entries."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never the network

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from litellm.litellm_core_utils.llm_cost_calc.utils import generic_cost_per_token
from litellm.types.utils import CompletionTokensDetailsWrapper, PromptTokensDetailsWrapper
from litellm.types.utils import Usage as LitellmUsage

from gateway.usage.pricing import (
    BUNDLED_TABLE,
    Price,
    charged_prices,
    cost_nanousd,
    policy_prices,
    table_prices,
    tier_suffix,
)
from gateway.usage.usage import Usage, usage_from_report

BUNDLED_TABLE.load()
ENTRIES: dict[str, Any] = BUNDLED_TABLE._entries or {}
# litellm reads these otherwise (per request time, per provider, per TTL, tier tables):
# not priced by the gateway (table_rates.py says so), so not compared.
UNFOLLOWED = ("tiered_pricing", "off_peak_pricing", "explicit_cache_read_input_token_cost")
COMPARABLE = sorted(
    name
    for name, entry in ENTRIES.items()
    if table_prices(entry) is not None
    and not any(key in entry for key in UNFOLLOWED)
    and entry.get("output_cost_per_token")  # 0: litellm bills image tokens instead
)
TIERS = [None, "default", "auto", "scale", "priority", "PRIORITY", "fast", "flex", "balanced"]


def litellm_cost(name: str, usage: Usage) -> float:
    """What litellm charges `usage` of the table entry `name`, in USD."""
    prompt = PromptTokensDetailsWrapper(
        cached_tokens=usage.cached_tokens or None,
        audio_tokens=usage.input_audio_tokens or None,
        cache_creation_tokens=usage.cache_write_tokens or None,
    )
    completion = CompletionTokensDetailsWrapper(
        audio_tokens=usage.output_audio_tokens or None,
        reasoning_tokens=usage.reasoning_tokens or None,
    )
    report = LitellmUsage(
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        total_tokens=usage.input_tokens + usage.output_tokens,
        prompt_tokens_details=prompt,
        completion_tokens_details=completion,
    )
    prompt_usd, completion_usd = generic_cost_per_token(
        name, report, "openai", service_tier=usage.service_tier, model_info=ENTRIES[name]
    )
    return prompt_usd + completion_usd


def our_cost(name: str, usage: Usage) -> int:
    prices = table_prices(ENTRIES[name])
    assert prices is not None
    return cost_nanousd(usage, charged_prices(prices, usage.service_tier, usage.input_tokens))


def agrees(ours_nano: int, theirs_usd: float) -> bool:
    """Equal but for litellm's float arithmetic and our one rounding to a nano-USD."""
    theirs_nano = Decimal(repr(theirs_usd)) * 10**9
    return abs(ours_nano - theirs_nano) <= 1 + abs(theirs_nano) * Decimal("1e-9")


@pytest.mark.parametrize(
    ("name", "usage", "usd"),
    [
        # The probe's cases: priority (and flex, half price), audio, a long prompt.
        ("gpt-4o-2024-08-06", Usage(1000, 500, service_tier="priority"), "0.01275"),
        ("gpt-4o-2024-08-06", Usage(1000, 500, service_tier="default"), "0.0075"),
        ("gpt-5", Usage(1000, 500, service_tier="priority"), "0.0125"),
        ("gpt-5", Usage(1000, 500, service_tier="flex"), "0.003125"),
        (
            "gpt-4o-audio-preview-2024-12-17",
            Usage(1000, 500, input_audio_tokens=800, output_audio_tokens=400),
            "0.0655",
        ),
        ("gemini-2.5-pro", Usage(300_000, 1000), "0.765"),
        ("gemini-2.5-pro", Usage(200_000, 1000), "0.26"),  # at the threshold: not past it
        # Past it, cached tokens too: 250k x 2.5e-6 + 50k x 2.5e-7 + 1000 x 1.5e-5
        ("gemini-2.5-pro", Usage(300_000, 1000, 50_000), "0.6525"),
        # Priority past it: its own step (4.5e-6, 4.5e-7 cached, 2.7e-5 out)
        ("gemini-2.5-pro", Usage(300_000, 1000, 50_000, service_tier="priority"), "1.1745"),
    ],
)
def test_the_probe_cases_cost_what_litellm_says(name, usage, usd):
    assert Decimal(our_cost(name, usage)) / 10**9 == Decimal(usd)
    assert agrees(our_cost(name, usage), litellm_cost(name, usage))


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    prompt = draw(st.one_of(st.integers(0, 5000), st.integers(0, 700_000)))
    cached = draw(st.integers(0, prompt))
    written = draw(st.integers(0, prompt - cached))
    audio_in = draw(st.integers(0, prompt - cached - written))
    output = draw(st.integers(0, 20_000))
    reasoning = draw(st.integers(0, output))
    audio_out = draw(st.integers(0, output - reasoning))
    return Usage(
        prompt,
        output,
        cached,
        cache_write_tokens=written,
        reasoning_tokens=reasoning,
        input_audio_tokens=audio_in,
        output_audio_tokens=audio_out,
        service_tier=draw(st.sampled_from(TIERS)),
    )


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(COMPARABLE), usages())
def test_every_table_entry_costs_what_litellm_says(name, usage):
    """Any entry, tier, prompt size, cached, written, reasoning and audio tokens."""
    assert agrees(our_cost(name, usage), litellm_cost(name, usage))


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(
        sorted(
            n for n in COMPARABLE if "_above_" in "".join(ENTRIES[n]) or "audio" in str(ENTRIES[n])
        )
    ),
    usages(),
)
def test_entries_with_steps_or_audio_cost_what_litellm_says(name, usage):
    assert agrees(our_cost(name, usage), litellm_cost(name, usage))


def test_a_tier_the_table_does_not_price_is_standard():
    prices = table_prices(ENTRIES["gpt-4o-2024-08-06"])
    assert prices is not None
    for tier in (None, "default", "auto", "flex", "scale", 7):
        assert charged_prices(prices, tier, 1000).input == 2_500_000_000  # no flex key
    assert charged_prices(prices, "priority", 1000).input == 4_250_000_000
    assert charged_prices(prices, "fast", 1000).input == 4_250_000_000  # billed as priority
    assert tier_suffix("Priority") == "priority" and tier_suffix(None) == ""


def test_an_entry_with_one_price_has_no_tiers():
    """The hot path's case: nothing to pick, the prices themselves."""
    prices = table_prices({"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6})
    assert prices is not None and prices.tiers is None
    assert charged_prices(prices, "priority", 10**9) is prices


def test_a_policy_price_charges_audio_and_every_tier_at_its_own_rates():
    """A policy `price` has one input and one output rate: audio tokens and tiers pay it."""
    prices = policy_prices(Price(2.5, 10))
    usage = Usage(
        1000, 500, input_audio_tokens=800, output_audio_tokens=400, service_tier="priority"
    )
    assert charged_prices(prices, "priority", 10**6) is prices
    assert cost_nanousd(usage, prices) == 7_500_000


def test_a_usage_report_gives_its_audio_tokens_and_the_answers_tier():
    report = {
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "prompt_tokens_details": {"cached_tokens": 10, "audio_tokens": 800},
        "completion_tokens_details": {"audio_tokens": 400, "reasoning_tokens": 0},
    }
    usage = usage_from_report(report, "priority")
    assert usage == Usage(
        1000, 500, 10, input_audio_tokens=800, output_audio_tokens=400, service_tier="priority"
    )
    assert usage_from_report(report, {"no": "tier"}).service_tier is None  # type: ignore[union-attr]
    # Anthropic says it in the usage itself
    anthropic = {"prompt_tokens": 5, "completion_tokens": 1, "service_tier": "priority"}
    assert usage_from_report(anthropic).service_tier == "priority"  # type: ignore[union-attr]


def test_audio_counts_past_the_uncached_input_are_capped():
    prices = table_prices(ENTRIES["gpt-4o-audio-preview-2024-12-17"])
    assert prices is not None
    capped = Usage(1000, 500, 400, input_audio_tokens=5000, output_audio_tokens=5000)
    exact = Usage(1000, 500, 400, input_audio_tokens=600, output_audio_tokens=500)
    assert cost_nanousd(capped, prices) == cost_nanousd(exact, prices)
