"""A request's worst case before it is forwarded: prompt tokens + output allowance, and
its USD cost at the highest price among the deployments it may go to.

Counting is tiktoken's (token_count.py). A long prompt is counted on a worker
thread so the event loop keeps serving; a short one inline, where a thread hop
would cost more than the count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from gateway.limits.plan import Estimate
from gateway.limits.token_count import count_prompt
from gateway.policy.compiled import ModelRoute
from gateway.providers.base import Endpoint
from gateway.usage.pricing import cost_nanousd
from gateway.usage.usage import Usage

# Without max_tokens and without the team's max_tokens_default, this much output is reserved.
DEFAULT_OUTPUT_ALLOWANCE = 4096
# Prompts longer than this are counted on a thread: 2 KB take ~0.25 ms inline, 100 KB ~5 ms.
INLINE_COUNT_CHARS = 2048
PROMPT_FIELDS: Mapping[Endpoint, str] = {
    "chat": "messages",
    "completions": "prompt",
    "embeddings": "input",
}
OUTPUT_FIELDS: Mapping[Endpoint, tuple[str, ...]] = {
    "chat": ("max_completion_tokens", "max_tokens"),
    "completions": ("max_tokens",),
    "responses": ("max_output_tokens",),
    "embeddings": (),
}


def output_allowance(endpoint: Endpoint, body: Mapping[str, Any], default: int | None) -> int:
    """The output tokens a request may generate: its own cap (api/fields.py checked it),
    else the team's default, else DEFAULT_OUTPUT_ALLOWANCE; times `n` choices."""
    if endpoint == "embeddings":
        return 0
    allowance = default if default is not None else DEFAULT_OUTPUT_ALLOWANCE
    for name in OUTPUT_FIELDS[endpoint]:
        value = body.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            allowance = int(value)
            break
    n = body.get("n")
    choices = int(n) if isinstance(n, int | float) and not isinstance(n, bool) and n >= 1 else 1
    return allowance * choices


def prompt_chars(endpoint: Endpoint, body: Mapping[str, Any]) -> int:
    """A cheap upper bound on the prompt's size, to choose inline or threaded counting."""
    if endpoint == "chat":
        messages = body.get("messages")
        if isinstance(messages, list):
            return _messages_size(messages)
    field = PROMPT_FIELDS.get(endpoint, "input")
    return _size(body.get(field), 0)


def _messages_size(messages: list[Any]) -> int:
    """_size of a chat's messages, without a generator per level for the usual shape
    (messages whose values are all strings): it runs on every request."""
    total = 0
    for message in messages:
        if not isinstance(message, dict):
            total += _size(message, 1)
            continue
        for value in message.values():
            total += len(value) if isinstance(value, str) else _size(value, 2)
    return total


def _size(value: Any, depth: int) -> int:
    if isinstance(value, str):
        return len(value)
    if depth > 4:
        return 0
    if isinstance(value, list):
        return sum(_size(v, depth + 1) for v in value)
    if isinstance(value, Mapping):
        return sum(_size(v, depth + 1) for v in value.values())
    return 1


def dearest_cost(route: ModelRoute, usage: Usage) -> int:
    """The cost of `usage` at the deployment that would charge most for it."""
    return max((cost_nanousd(usage, d.prices) for d in route.deployments), default=0)


def estimate_now(
    endpoint: Endpoint,
    body: Mapping[str, Any],
    route: ModelRoute,
    default_output: int | None,
) -> Estimate:
    model = route.deployments[0].model if route.deployments else route.alias
    prompt = count_prompt(endpoint, body, model)
    output = output_allowance(endpoint, body, default_output)
    return Estimate(prompt + output, dearest_cost(route, Usage(prompt, output)))


async def estimate(
    endpoint: Endpoint,
    body: Mapping[str, Any],
    route: ModelRoute,
    default_output: int | None,
) -> Estimate:
    if prompt_chars(endpoint, body) <= INLINE_COUNT_CHARS:
        return estimate_now(endpoint, body, route, default_output)
    return await asyncio.to_thread(estimate_now, endpoint, body, route, default_output)
