"""A request's worst case before it is forwarded: prompt tokens + output allowance, and
its USD cost at the highest price among the deployments it may go to.

A Responses follow-up also carries its stored conversation (`carried` tokens, read
from the MAC'd `previous_response_id`: routing/affinity.py), which the upstream bills
as input: it counts as prompt, priced at the input price.

Counting is tiktoken's (token_count.py). A prompt with much new text is counted on
a worker thread so the event loop keeps serving; one with little (or none: texts
seen before are remembered) inline, where a thread hop would cost more than the count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway.limits.plan import Estimate
from gateway.limits.token_count import (
    PROMPT_FIELDS,
    TextCounter,
    as_dict,
    count_messages_within,
    count_prompt_with,
    counter_for,
    extra_texts,
    prediction_texts,
)
from gateway.policy.compiled import ModelRoute
from gateway.providers.base import Endpoint
from gateway.usage.nano import nano_of
from gateway.usage.pricing import charged_prices, cost_nanousd
from gateway.usage.usage import Usage

# Without max_tokens and without the team's max_tokens_default, this much output is reserved.
DEFAULT_OUTPUT_ALLOWANCE: Final = 4096
# Prompts with more text to tokenize than this are counted on a thread: 2 KB take
# ~0.25 ms inline, 100 KB ~5 ms. For chat, only texts not remembered count (the others
# cost a lookup); for the other endpoints, prompt_chars of the whole prompt.
INLINE_COUNT_CHARS: Final = 2048
NUMBER: Final = (int, float)
# Every output cap of the generating endpoints (embeddings generate nothing): a body
# may carry another endpoint's (max_tokens on /v1/responses) and an upstream may honour
# it, so the estimate reads all three on each (api/field_table.py checks them all, by
# the endpoint's own cap's bounds).
OUTPUT_CAPS: Final = ("max_tokens", "max_completion_tokens", "max_output_tokens")
# The endpoint's own caps: a body without any of them gets one (output_capped).
OWN_CAPS: Final[Mapping[Endpoint, tuple[str, ...]]] = {
    "chat": ("max_completion_tokens", "max_tokens"),
    "completions": ("max_tokens",),
    "responses": ("max_output_tokens",),
}


# The field that carries a cap the gateway adds (output_capped): chat's current one.
CAP_FIELDS: Final[Mapping[Endpoint, str]] = {
    "chat": "max_completion_tokens",
    "completions": "max_tokens",
    "responses": "max_output_tokens",
}


def largest_cap(body: dict[str, Any]) -> int:
    """The largest output cap `body` sets (api/fields.py checked each), -1 for none."""
    largest = -1
    for name in OUTPUT_CAPS:
        value = body.get(name)
        if isinstance(value, NUMBER) and not isinstance(value, bool) and value > largest:
            largest = int(value)
    return largest


def output_allowance(endpoint: Endpoint, body: dict[str, Any], default: int | None) -> int:
    """The output tokens a request may generate: its largest cap (of its own and other
    endpoints': an upstream may honour any), else the team's default, else
    DEFAULT_OUTPUT_ALLOWANCE; times `n` choices (for completions, times `best_of` when
    larger: that many are generated and billed), times the prompts of a completions batch."""
    if endpoint == "embeddings":
        return 0
    allowance = largest_cap(body)
    if allowance < 0:
        allowance = default if default is not None else DEFAULT_OUTPUT_ALLOWANCE
    n = body.get("n")
    if endpoint == "completions":
        allowance *= _prompts(body.get("prompt"))
        best_of = body.get("best_of")
    else:
        best_of = None
    if n is None and best_of is None:  # the usual case: one choice
        return allowance
    return allowance * max(_choices(n), _choices(best_of))


def _prompts(prompt: Any) -> int:
    """The prompts of a completions request: a list of strings or of token lists is a
    batch, one completion each; a string or one token list is one."""
    if not isinstance(prompt, list) or not prompt:
        return 1
    return sum(1 for item in prompt if isinstance(item, (str, list))) or 1


def output_capped(
    endpoint: Endpoint, body: Mapping[str, Any], default: int | None
) -> Mapping[str, Any]:
    """`body`, with the output allowance its estimate assumed as its own cap when it sets
    none of its own: an uncapped request could generate past what it reserved, and
    concurrent ones would overrun a budget by many estimates, not one. A body capped
    only by another endpoint's field gets its own at that cap: an upstream that ignores
    the foreign field is then held to the estimate too."""
    field = CAP_FIELDS.get(endpoint)
    if field is None:
        return body
    fields = as_dict(body)
    for name in OWN_CAPS[endpoint]:
        if fields.get(name) is not None:
            return body  # the usual case: the caller's own cap
    cap = largest_cap(fields)
    if cap < 0:
        cap = default if default is not None else DEFAULT_OUTPUT_ALLOWANCE
    return {**fields, field: cap}


def _choices(value: Any) -> int:
    return (
        int(value)
        if isinstance(value, NUMBER) and not isinstance(value, bool) and value >= 1
        else 1
    )


def prompt_chars(endpoint: Endpoint, body: Mapping[str, Any], extras: list[str]) -> int:
    """A cheap upper bound on the prompt's size (and its extra_texts'), to choose inline
    or threaded counting (a chat prompt's new text is measured while it is counted:
    count_messages_within)."""
    return _size(body.get(PROMPT_FIELDS[endpoint]), 0) + sum(map(len, extras))


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


def dearest_cost(route: ModelRoute, usage: Usage, service_tier: object = None) -> int:
    """The cost of `usage` at the deployment that would charge most for it, at the
    standard tier or at `service_tier` (the request's), whichever costs more."""
    costs = (
        cost_nanousd(usage, charged_prices(d.prices, tier, usage.input_tokens))
        for d in route.deployments
        for tier in (None, service_tier)
    )
    return max(costs, default=0)


# No threshold: larger than any prompt.
NO_THRESHOLD: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class RouteFacts:
    """What an estimate reads of a route, worked out once per route object."""

    route: ModelRoute
    counter: TextCounter  # the first deployment's model's encoding: it counts the prompt
    prices: tuple[tuple[int, int], ...]  # each deployment's (input, output) nano-USD per Mtok
    # Where some deployment's table charges otherwise (`dearest_as_asked`): past a prompt
    # size, at a service tier the request asks for, for audio output it asks for.
    least_threshold: int = NO_THRESHOLD
    has_tiers: bool = False
    has_audio_output: bool = False

    def dearest(self, prompt: int, output: int) -> int:
        """dearest_cost of Usage(prompt, output): rounding is monotonic, so the dearest
        exact sum, rounded once, is the dearest rounded cost."""
        most = 0
        for input_price, output_price in self.prices:
            cost = prompt * input_price + output * output_price
            if cost > most:
                most = cost
        return nano_of(most)

    def dearest_as_asked(
        self, prompt: int, output: int, prompt_size: int, tier: object, audio: bool
    ) -> int:
        """`dearest`, at each deployment's prices for a prompt of `prompt_size` tokens at
        the standard tier and at `tier` (the dearer), output priced as audio if `audio`."""
        most = 0
        for deployment in self.route.deployments:
            for asked in (None, tier) if tier is not None else (None,):
                prices = charged_prices(deployment.prices, asked, prompt_size)
                output_price = prices.output
                if audio and prices.output_audio is not None:
                    output_price = max(output_price, prices.output_audio)
                cost = prompt * prices.input + output * output_price
                if cost > most:
                    most = cost
        return nano_of(most)


# Route facts kept (one per route object of the policies in use): then it starts over.
ROUTES_KEPT: Final = 4096
_facts: Final[dict[int, RouteFacts]] = {}


def route_facts(route: ModelRoute) -> RouteFacts:
    facts = _facts.get(id(route))
    if facts is not None and facts.route is route:
        return facts
    if len(_facts) >= ROUTES_KEPT:
        _facts.clear()
    model = route.deployments[0].model if route.deployments else route.alias
    prices = tuple(dict.fromkeys((d.prices.input, d.prices.output) for d in route.deployments))
    least_threshold, has_tiers, has_audio_output = NO_THRESHOLD, False, False
    for deployment in route.deployments:
        tiers = deployment.prices.tiers
        if tiers is not None:
            least = tiers.least_threshold
            if least is not None and least < least_threshold:
                least_threshold = least
            has_tiers = has_tiers or bool(tiers.by_tier)
        audio = deployment.prices.output_audio
        has_audio_output = has_audio_output or (audio or 0) > deployment.prices.output
    facts = _facts[id(route)] = RouteFacts(
        route, counter_for(model), prices, least_threshold, has_tiers, has_audio_output
    )
    return facts


def predicted_tokens(counter: TextCounter, endpoint: Endpoint, body: dict[str, Any]) -> int:
    """The tokens of chat's predicted output, which the prompt count includes: OpenAI
    bills the rejected ones as completion tokens, so the USD estimate prices them as
    output. Counted already with the prompt: a lookup."""
    if endpoint != "chat":
        return 0
    prediction = body.get("prediction")
    if prediction is None:  # the usual case: no call
        return 0
    return sum(map(counter.count, prediction_texts(prediction)))


def priced(
    facts: RouteFacts, endpoint: Endpoint, body: dict[str, Any], prompt: int, output: int
) -> Estimate:
    """The estimate of `prompt` + `output` tokens, a prediction's priced as output; at
    the prices the request asks for (a service tier, audio output) or its prompt's size
    reaches, where some deployment's table has such prices."""
    predicted = predicted_tokens(facts.counter, endpoint, body)
    tier = body.get("service_tier") if facts.has_tiers else None
    audio = facts.has_audio_output and asks_audio(body)
    if tier is None and not audio and prompt <= facts.least_threshold:  # the usual case
        return Estimate(prompt + output, facts.dearest(prompt - predicted, output + predicted))
    cost = facts.dearest_as_asked(prompt - predicted, output + predicted, prompt, tier, audio)
    return Estimate(prompt + output, cost)


def asks_audio(body: dict[str, Any]) -> bool:
    """Does a chat request ask for spoken output (`modalities` with "audio")?"""
    modalities = body.get("modalities")
    return isinstance(modalities, list) and "audio" in modalities


def estimate_now(
    endpoint: Endpoint,
    body: Mapping[str, Any],
    route: ModelRoute,
    default_output: int | None,
    carried: int = 0,
) -> Estimate:
    """The estimate, however long the prompt (a long one: call on a worker thread)."""
    facts = route_facts(route)
    fields = as_dict(body)
    prompt = count_prompt_with(facts.counter, endpoint, fields) + carried
    allowance = output_allowance(endpoint, fields, default_output)
    return priced(facts, endpoint, fields, prompt, allowance)


def estimate_inline(
    endpoint: Endpoint,
    body: Mapping[str, Any],
    route: ModelRoute,
    default_output: int | None,
    carried: int = 0,
) -> Estimate | None:
    """estimate_now when the prompt has at most INLINE_COUNT_CHARS of text to tokenize;
    None otherwise: count it on a thread (`estimate`), so the event loop keeps serving.
    A chat prompt is measured and counted in one pass over its messages."""
    facts = route_facts(route)
    fields = as_dict(body)
    extras = extra_texts(endpoint, fields)  # tools, instructions...: usually none
    if endpoint == "chat":
        messages = fields.get("messages")
        prompt = count_messages_within(
            facts.counter,
            messages if isinstance(messages, list) else (),
            INLINE_COUNT_CHARS,
            extras,
        )
        if prompt is None:
            return None
    elif prompt_chars(endpoint, fields, extras) > INLINE_COUNT_CHARS:
        return None
    else:
        prompt = count_prompt_with(facts.counter, endpoint, fields, extras)
    prompt += carried
    allowance = output_allowance(endpoint, fields, default_output)
    return priced(facts, endpoint, fields, prompt, allowance)


async def estimate(
    endpoint: Endpoint,
    body: Mapping[str, Any],
    route: ModelRoute,
    default_output: int | None,
    carried: int = 0,
) -> Estimate:
    """The estimate; `carried`: the tokens of a Responses follow-up's stored conversation."""
    found = estimate_inline(endpoint, body, route, default_output, carried)
    if found is not None:
        return found
    return await estimate_on_thread(endpoint, body, route, default_output, carried)


def estimate_on_thread(
    endpoint: Endpoint,
    body: Mapping[str, Any],
    route: ModelRoute,
    default_output: int | None,
    carried: int = 0,
) -> Coroutine[Any, Any, Estimate]:
    """estimate_now on a worker thread (a prompt too long to count inline), to await."""
    return asyncio.to_thread(estimate_now, endpoint, body, route, default_output, carried)
