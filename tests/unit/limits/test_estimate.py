"""The estimate: output allowance by field, n choices, the dearest deployment's price."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gateway.limits.estimate import (
    DEFAULT_OUTPUT_ALLOWANCE,
    dearest_cost,
    estimate,
    output_allowance,
)
from gateway.limits.token_count import encoding
from gateway.policy.compiled import Deployment, ModelRoute, RoutingConfig
from gateway.usage.pricing import PriceSource, UnitPrices
from gateway.usage.usage import Usage


def prices(i: int, o: int) -> UnitPrices:
    return UnitPrices(i, o, i, i, o, PriceSource.POLICY)


ROUTE = ModelRoute(
    "m",
    (
        Deployment("a", "gpt-4o", 1, 1, None, prices(2_500_000_000, 10_000_000_000)),
        Deployment("b", "gpt-4o", 1, 2, None, prices(5_000_000_000, 1_000_000_000)),
    ),
    RoutingConfig(),
    None,
)


def test_output_allowance_precedence() -> None:
    assert output_allowance("chat", {"max_completion_tokens": 7, "max_tokens": 9}, 100) == 7
    assert output_allowance("chat", {"max_tokens": 9.0, "n": 3}, 100) == 27
    assert output_allowance("chat", {}, 100) == 100
    assert output_allowance("chat", {}, None) == DEFAULT_OUTPUT_ALLOWANCE
    assert output_allowance("responses", {"max_output_tokens": 16}, None) == 16
    assert output_allowance("embeddings", {"max_tokens": 5}, 100) == 0


def test_the_usd_estimate_is_the_dearest_deployment_for_this_request() -> None:
    """Output-heavy → deployment a is dearer; input-heavy → b."""
    assert dearest_cost(ROUTE, Usage(0, 1_000_000)) == 10_000_000_000
    assert dearest_cost(ROUTE, Usage(1_000_000, 0)) == 5_000_000_000


def test_a_100kb_prompt_is_counted_off_the_event_loop() -> None:
    """While a 100 KB prompt is counted, the loop still ticks every few ms."""
    body = {"messages": [{"role": "user", "content": "word " * 20_000}], "max_tokens": 5}
    encoding("o200k_base")  # loaded once per process, at the first count

    async def main() -> tuple[int, float]:
        gaps: list[float] = []

        async def ticker() -> None:
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        found = await estimate("chat", body, ROUTE, None)
        task.cancel()
        return found.tokens, max(gaps)

    tokens, worst_gap = asyncio.run(main())
    assert tokens > 20_000
    assert worst_gap < 0.05


def test_prompt_chars_of_chat_messages_is_the_general_walk() -> None:
    """The chat fast path measures what the general walk measures, for every shape."""
    from gateway.limits.estimate import _size, prompt_chars

    shapes: list[Any] = [
        [{"role": "user", "content": "hello"}],
        [{"role": "user", "content": [{"type": "text", "text": "abc"}, "xy"], "name": "n"}],
        [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}],
        ["not a message", 7, None, [[["deep", ["deeper", ["deepest"]]]]]],
        [{"a": {"b": {"c": {"d": {"e": "too deep"}}}}}],
        [],
    ]
    for messages in shapes:
        assert prompt_chars("chat", {"messages": messages}) == _size(messages, 0)
