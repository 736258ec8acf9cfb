"""The USD estimate at the prices a request asks for or reaches (estimate.py): a
service tier it asks for, audio output, a prompt past a table's threshold. A request
without any prices as before, on the precomputed fast path."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.limits.estimate import dearest_cost, estimate_now, route_facts
from gateway.policy.compiled import Deployment, ModelRoute, RoutingConfig
from gateway.usage.nano import nano_of
from gateway.usage.pricing import BUNDLED_TABLE, Price, policy_prices
from gateway.usage.usage import Usage


def route(*models: str, price: Price | None = None) -> ModelRoute:
    deployments = tuple(
        Deployment(
            "up",
            model,
            1,
            1,
            price,
            policy_prices(price) if price else BUNDLED_TABLE.lookup(model, "openai"),  # type: ignore[arg-type]
        )
        for model in models
    )
    return ModelRoute("m", deployments, RoutingConfig(), None)


GPT_4O = route("gpt-4o-2024-08-06")
GEMINI = route("gemini-2.5-pro")
AUDIO = route("gpt-4o-audio-preview-2024-12-17")
MIXED = route("gpt-4o-2024-08-06", "gemini-2.5-pro")


def chat(text: str = "hi", max_tokens: int = 1000, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens, **extra}


def prompt_of(route_: ModelRoute, body: dict[str, Any]) -> int:
    return estimate_now("chat", body, route_, None).tokens - body["max_tokens"]


@pytest.mark.parametrize(
    ("tier", "input_nano", "output_nano"),
    [
        ("priority", 4_250_000_000, 17_000_000_000),
        ("fast", 4_250_000_000, 17_000_000_000),  # billed as priority
        (None, 2_500_000_000, 10_000_000_000),
        ("auto", 2_500_000_000, 10_000_000_000),
        ("default", 2_500_000_000, 10_000_000_000),
        ("flex", 2_500_000_000, 10_000_000_000),  # no flex price: standard
    ],
)
def test_a_request_asking_a_tier_is_estimated_at_its_prices(tier, input_nano, output_nano):
    body = chat() if tier is None else chat(service_tier=tier)
    found = estimate_now("chat", body, GPT_4O, None)
    prompt = prompt_of(GPT_4O, chat())
    assert found.nanousd == nano_of(prompt * input_nano + 1000 * output_nano)
    assert found.nanousd == dearest_cost(GPT_4O, Usage(prompt, 1000), tier)


def test_flex_is_reserved_at_the_standard_price_not_below():
    """Asked for flex, an upstream may serve the standard tier: the dearer one is held."""
    gpt_5 = route("gpt-5")
    prompt = prompt_of(gpt_5, chat())
    flex = estimate_now("chat", chat(service_tier="flex"), gpt_5, None)
    assert flex.nanousd == estimate_now("chat", chat(), gpt_5, None).nanousd
    assert flex.nanousd == nano_of(prompt * 1_250_000_000 + 1000 * 10_000_000_000)


def test_a_prompt_past_the_threshold_is_estimated_at_the_long_context_prices():
    """gemini-2.5-pro past 200k prompt tokens: 2.5 in, 15 out per Mtok for all of it."""
    long_body = chat("hello " * 201_000)
    prompt = prompt_of(GEMINI, long_body)
    assert prompt > 200_000
    found = estimate_now("chat", long_body, GEMINI, None)
    assert found.nanousd == nano_of(prompt * 2_500_000_000 + 1000 * 15_000_000_000)
    short = chat("hello " * 1000)
    short_prompt = prompt_of(GEMINI, short)
    assert estimate_now("chat", short, GEMINI, None).nanousd == nano_of(
        short_prompt * 1_250_000_000 + 1000 * 10_000_000_000
    )


def test_the_dearest_deployment_at_the_asked_tier_wins():
    prompt = prompt_of(MIXED, chat())
    found = estimate_now("chat", chat(service_tier="priority"), MIXED, None)
    gpt = prompt * 4_250_000_000 + 1000 * 17_000_000_000
    gemini = prompt * 2_250_000_000 + 1000 * 18_000_000_000
    assert found.nanousd == nano_of(max(gpt, gemini))


def test_audio_output_asked_for_is_estimated_at_the_audio_price():
    prompt = prompt_of(AUDIO, chat())
    spoken = estimate_now("chat", chat(modalities=["text", "audio"]), AUDIO, None)
    assert spoken.nanousd == nano_of(prompt * 2_500_000_000 + 1000 * 80_000_000_000)
    written = estimate_now("chat", chat(modalities=["text"]), AUDIO, None)
    assert written.nanousd == nano_of(prompt * 2_500_000_000 + 1000 * 10_000_000_000)


def test_a_route_without_other_prices_takes_the_fast_path():
    """Policy prices: no thresholds, no tiers, no audio; a tier asked for changes nothing."""
    priced = route("gpt-4o-2024-08-06", price=Price(1, 2))
    facts = route_facts(priced)
    assert not facts.has_tiers and not facts.has_audio_output
    assert facts.least_threshold > 2**62
    asked = estimate_now("chat", chat(service_tier="priority"), priced, None)
    assert asked == estimate_now("chat", chat(), priced, None)


def test_route_facts_know_where_a_table_prices_otherwise():
    assert route_facts(GEMINI).least_threshold == 200_000
    assert route_facts(GPT_4O).has_tiers and not route_facts(GPT_4O).has_audio_output
    assert route_facts(AUDIO).has_audio_output
