"""The estimate: output allowance by field, n choices, the dearest deployment's price."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Container
from typing import Any, cast

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.limits.estimate import (
    DEFAULT_OUTPUT_ALLOWANCE,
    INLINE_COUNT_CHARS,
    OUTPUT_CAPS,
    OWN_CAPS,
    dearest_cost,
    estimate,
    estimate_inline,
    estimate_now,
    output_allowance,
    output_capped,
    route_facts,
)
from gateway.limits.plan import Estimate
from gateway.limits.token_count import (
    REMEMBERED_CHARS,
    REPLY_PRIMING_TOKENS,
    TOKENS_PER_MESSAGE,
    TextCounter,
    count_messages_within,
    encoding,
    encoding_for,
)
from gateway.policy.compiled import Deployment, ModelRoute, RoutingConfig
from gateway.providers.base import Endpoint
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
    # both of chat's caps: an upstream may honour either, so the larger is reserved
    assert output_allowance("chat", {"max_completion_tokens": 7, "max_tokens": 9}, 100) == 9
    assert output_allowance("chat", {"max_completion_tokens": 9, "max_tokens": 7}, 100) == 9
    assert output_allowance("chat", {"max_completion_tokens": 0}, 100) == 0
    assert output_allowance("chat", {"max_tokens": None}, 100) == 100
    assert output_allowance("chat", {"max_tokens": 9.0, "n": 3}, 100) == 27
    assert output_allowance("chat", {}, 100) == 100
    assert output_allowance("chat", {}, None) == DEFAULT_OUTPUT_ALLOWANCE
    assert output_allowance("responses", {"max_output_tokens": 16}, None) == 16
    assert output_allowance("embeddings", {"max_tokens": 5}, 100) == 0


def test_completions_best_of_is_reserved_for_every_generation() -> None:
    """best_of generates (and bills) that many completions, whatever n returns."""
    assert output_allowance("completions", {"max_tokens": 10, "best_of": 5}, None) == 50
    assert output_allowance("completions", {"max_tokens": 10, "best_of": 2, "n": 3}, None) == 30
    assert output_allowance("chat", {"max_tokens": 10, "best_of": 5}, None) == 10


LONG_TEXT = "Answer as the senior reviewer would, citing the policy. " * 40  # ~2.2 KB


@pytest.mark.parametrize(
    ("endpoint", "extra"),
    [
        ("responses", {"instructions": LONG_TEXT[:1500]}),
        (
            "responses",
            {"tools": [{"type": "function", "name": "f", "description": LONG_TEXT[:900]}]},
        ),
        (
            "chat",
            {
                "tools": [
                    {"type": "function", "function": {"name": "f", "description": LONG_TEXT[:900]}}
                ]
            },
        ),
        (
            "chat",
            {"response_format": {"type": "json_schema", "json_schema": {"name": LONG_TEXT[:600]}}},
        ),
        ("completions", {"suffix": LONG_TEXT[:700]}),
        (
            "responses",
            {
                "input": [
                    {"type": "function_call_output", "call_id": "c", "output": LONG_TEXT[:1500]}
                ]
            },
        ),
        (
            "responses",
            {
                "input": [
                    {
                        "type": "function_call",
                        "call_id": "c",
                        "name": "f",
                        "arguments": LONG_TEXT[:800],
                    }
                ]
            },
        ),
    ],
)
def test_billed_input_besides_the_prompt_is_estimated(endpoint: Endpoint, extra: dict) -> None:  # type: ignore[type-arg]
    """Tool schemas, a response format's schema, the Responses API's instructions, tool
    calls and outputs: the upstream bills them as input, so the estimate counts them,
    inline and on a thread."""
    prompt: dict[str, Any] = {
        "chat": {"messages": [{"role": "user", "content": "hi"}]},
        "responses": {"input": [{"role": "user", "content": "hi"}]},
        "completions": {"prompt": "hi"},
    }[endpoint]
    bare = estimate_now(endpoint, {**prompt, "max_tokens": 5}, ROUTE, None)
    body = {**prompt, **extra, "max_tokens": 5}
    (text,) = [v if isinstance(v, str) else str(v) for v in extra.values()]
    at_least = len(encoding("o200k_base").encode(text)) // 2  # the JSON adds, never halves
    inline = estimate_inline(endpoint, body, ROUTE, None)
    assert inline is not None and inline == estimate_now(endpoint, body, ROUTE, None)
    assert inline.tokens >= bare.tokens + at_least


@pytest.mark.parametrize(
    "content",
    [" ".join(["word"] * 1500), [{"type": "text", "text": " ".join(["word"] * 1500)}]],
    ids=["string", "parts"],
)
def test_a_chat_prediction_is_part_of_the_worst_case(content: object) -> None:
    """A 1500-word prediction (rejected tokens are billed as completion tokens) makes the
    estimate pass a 2000-token budget: it used to be left out."""
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 500,
        "prediction": {"type": "content", "content": content},
    }
    found = asyncio.run(estimate("chat", body, ROUTE, None))
    assert found == estimate_now("chat", body, ROUTE, None)
    assert found.tokens > 2000


def test_a_chat_prediction_is_priced_as_output() -> None:
    """Rejected prediction tokens are billed as completion tokens: the USD worst case
    prices them at the dearest output rate, not the input rate."""
    plain = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    words = " ".join(["word"] * 300)
    body = {**plain, "prediction": {"type": "content", "content": words}}
    bare, found = estimate_now("chat", plain, ROUTE, None), estimate_now("chat", body, ROUTE, None)
    predicted = len(encoding("o200k_base").encode(words))
    assert found.tokens == bare.tokens + predicted
    prompt = bare.tokens - 10
    # deployment a's output rate (10 USD/Mtok) beats b's input rate (5) for those tokens
    assert found.nanousd == max(
        dearest_cost(ROUTE, Usage(prompt, 10 + predicted)),
        dearest_cost(ROUTE, Usage(prompt + predicted, 10)),
    )
    assert found.nanousd == dearest_cost(ROUTE, Usage(prompt, 10 + predicted))
    assert asyncio.run(estimate("chat", body, ROUTE, None)) == found


@pytest.mark.parametrize(
    "body",
    [
        {"input": "next", "max_output_tokens": 50},  # counted inline
        {"input": "word " * 20_000, "max_output_tokens": 50},  # counted on a thread
    ],
)
@pytest.mark.parametrize("carried", [1, 7_224, 2**63 - 1])
def test_a_follow_ups_carried_context_is_prompt_priced_as_input(
    body: dict[str, Any], carried: int
) -> None:
    """A Responses follow-up's stored conversation is billed as input: its worst case adds
    it to the prompt, at the dearest input price (deployment b's, 5 USD/Mtok)."""
    bare = estimate_now("responses", body, ROUTE, None)
    found = estimate_now("responses", body, ROUTE, None, carried)
    assert found.tokens == bare.tokens + carried
    assert found.nanousd == dearest_cost(ROUTE, Usage(bare.tokens - 50 + carried, 50))
    assert asyncio.run(estimate("responses", body, ROUTE, None, carried)) == found
    inline = estimate_inline("responses", body, ROUTE, None, carried)
    assert inline is None or inline == found


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("responses", {"input": "hi", "instructions": "word " * 20_000}),
        ("chat", {"messages": [{"role": "user", "content": "hi"}],
                  "tools": [{"type": "function", "function": {"name": "f", "description": "word " * 20_000}}]}),
    ],
)  # fmt: skip
def test_a_long_extra_input_is_counted_on_a_thread(endpoint: Endpoint, body: dict) -> None:  # type: ignore[type-arg]
    assert estimate_inline(endpoint, body, ROUTE, None) is None
    assert asyncio.run(estimate(endpoint, body, ROUTE, None)).tokens > 20_000


def test_the_usd_estimate_is_the_dearest_deployment_for_this_request() -> None:
    """Output-heavy → deployment a is dearer; input-heavy → b."""
    assert dearest_cost(ROUTE, Usage(0, 1_000_000)) == 10_000_000_000
    assert dearest_cost(ROUTE, Usage(1_000_000, 0)) == 5_000_000_000


def test_a_long_prompt_is_counted_off_the_event_loop() -> None:
    """While a long prompt is counted (a few hundred ms), the loop keeps ticking. The last
    gap runs to the estimate's return (a stall that starts after the last tick counts), and
    the bound is a share of the whole count, so a slow machine, slowing both, does not
    fail it: counting on the loop leaves one gap of nearly the whole, every time.

    Off the loop, the count still holds the GIL for a while (tiktoken builds its list of
    1.6M ints with it: ~45 ms of ~210 here, 180 of 400 seen once on a loaded CI machine),
    so the count is measured up to three times and one clean run passes."""
    body = {"messages": [{"role": "user", "content": "word " * 1_600_000}], "max_tokens": 5}
    encoding("o200k_base")  # loaded once per process, at the first count

    async def main() -> tuple[int, list[float]]:
        ticks: list[float] = []

        async def ticker() -> None:
            while True:
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        found = await estimate("chat", body, ROUTE, None)
        ended = time.perf_counter()
        task.cancel()
        during = [started, *(t for t in ticks if started < t < ended), ended]
        return found.tokens, during

    seen = []
    for _ in range(3):
        tokens, during = asyncio.run(main())
        assert tokens > 1_600_000
        gaps = [later - earlier for earlier, later in itertools.pairwise(during)]
        whole = during[-1] - during[0]
        seen.append((whole, sorted(gaps)[-3:]))
        if len(gaps) >= 5 and max(gaps) < 0.4 * whole:
            return
    pytest.fail(f"the loop stalled in every count (whole, longest gaps): {seen}")


# The single-pass estimate against a straightforward reference: the prompt counted
# with tiktoken directly (no memory), OpenAI's per-message overhead, output_allowance,
# and dearest_cost, for generated chat bodies of every shape the API lets through.

ROUTES = (
    ROUTE,
    ModelRoute(
        "c", (Deployment("c", "gpt-3.5-turbo", 1, 1, None, prices(7, 9)),), RoutingConfig(), None
    ),
    ModelRoute("gpt-4o-mini", (), RoutingConfig(), None),  # no deployment: counts, costs 0
)
POOL = ["Hello world", "You are a careful senior engineer.", "", "こんにちは", "<|endoftext|>"]


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of `choices`, each as often as its weight (one_of draws its branches evenly,
    and flattens nested one_ofs into one choice among all of their branches)."""
    listed = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(listed) - 1).flatmap(lambda i: listed[i])


short_texts = st.one_of(st.sampled_from(POOL), st.text(max_size=30))
long_texts = st.builds(
    lambda word, times: word * times,
    st.sampled_from(["word ", "ß€ ", '{"k": 1} ']),
    st.integers(100, 900),
)
texts = weighted((3, short_texts), (1, long_texts))
odd = st.sampled_from([None, 0, 7, -1, 2.5, True, False])  # JSON values that are no text
parts = weighted(
    (2, texts),
    (3, st.fixed_dictionaries({"type": st.just("text"), "text": texts})),
    (1, st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.just({"url": "x"})})),
    (1, st.fixed_dictionaries({"text": st.one_of(odd, st.lists(texts, max_size=2))})),
    (1, odd),
)
contents = weighted(
    (5, texts),
    (3, st.lists(parts, max_size=4)),
    (1, odd),
    (1, st.dictionaries(short_texts, texts, max_size=2)),
)
functions = st.fixed_dictionaries(
    {},
    optional={
        "name": weighted((4, short_texts), (1, odd)),
        "arguments": weighted(
            (4, texts), (1, odd), (1, st.dictionaries(short_texts, short_texts, max_size=2))
        ),
    },
)
calls = weighted(
    (5, st.fixed_dictionaries({"id": short_texts, "function": functions})),
    (1, st.fixed_dictionaries({"function": texts})),
    (1, texts),
    (1, odd),
)
names = weighted((4, short_texts), (1, st.lists(parts, max_size=2)), (1, odd))
roles = st.sampled_from(["system", "user", "assistant", "tool"])
messages = weighted(
    (6, st.fixed_dictionaries({"role": roles, "content": contents})),
    (2, st.fixed_dictionaries({"role": roles, "content": contents, "name": names})),
    (
        2,
        st.fixed_dictionaries(
            {"role": st.just("assistant"), "tool_calls": st.lists(calls, max_size=3)},
            optional={"content": st.one_of(texts, odd)},
        ),
    ),
    (
        1,
        st.fixed_dictionaries(
            {},
            optional={
                "content": contents,
                "name": names,
                "tool_calls": st.one_of(texts, odd),
            },
        ),
    ),
    (1, odd),
    (1, st.lists(texts, max_size=2)),
)
caps = weighted(
    (6, st.integers(0, 10**6)),
    (2, st.none()),
    (1, st.floats(0, 10**6, allow_nan=False)),
    (1, st.booleans()),
    (1, short_texts),
)
outputs = {
    "max_tokens": caps,
    "max_completion_tokens": caps,
    "n": weighted(
        (4, st.integers(1, 8)),
        (1, st.integers(-2, 0)),
        (1, st.floats(-2, 8, allow_nan=False)),
        (1, st.booleans()),
        (1, st.none()),
    ),
}
chat_bodies = weighted(
    (8, st.fixed_dictionaries({"messages": st.lists(messages, max_size=6)}, optional=outputs)),
    (1, st.fixed_dictionaries({"messages": st.one_of(texts, odd)}, optional=outputs)),
    (1, st.fixed_dictionaries({}, optional=outputs)),  # no messages at all
)


def reference_texts(body: dict[str, Any]) -> list[str]:
    """Every text the prompt's count includes, in order, written out plainly."""

    def of(value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            return []
        found = [p for p in value if isinstance(p, str)]
        found += [
            p["text"] for p in value if isinstance(p, dict) and isinstance(p.get("text"), str)
        ]
        return found

    found: list[str] = []
    listed = body.get("messages")
    for message in listed if isinstance(listed, list) else []:
        if isinstance(message, dict):
            found += of(message.get("content"))
            for field in ("role", "name", "refusal"):  # the cookbook counts every value
                found += of(message.get(field))
            calls = message.get("tool_calls")
            for call in calls if isinstance(calls, list) else []:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    found += [str(function.get("name", "")), str(function.get("arguments", ""))]
    return found


def reference_images(body: dict[str, Any]) -> int:
    """Every image part's allowance: the `parts` above name no detail, so 1,445 each."""

    def of(value: Any) -> int:
        listed = value if isinstance(value, list) else []
        return sum(1445 for p in listed if isinstance(p, dict) and p.get("type") == "image_url")

    listed = body.get("messages")
    return sum(
        of(message.get("content")) + of(message.get("name"))
        for message in (listed if isinstance(listed, list) else [])
        if isinstance(message, dict)
    )


def reference_prompt(body: dict[str, Any], encoder: tiktoken.Encoding) -> int:
    """The prompt's tokens: every text tokenized afresh, plus OpenAI's message overhead
    and each image's allowance."""
    listed = body.get("messages")
    overhead = TOKENS_PER_MESSAGE * len(listed) if isinstance(listed, list) else 0
    for message in listed if isinstance(listed, list) else []:  # a name costs a token more
        overhead += isinstance(message, dict) and message.get("name") is not None
    tokens = sum(len(encoder.encode(t, disallowed_special=())) for t in reference_texts(body))
    return REPLY_PRIMING_TOKENS + overhead + tokens + reference_images(body)


def reference_estimate(body: dict[str, Any], route: ModelRoute, default: int | None) -> Estimate:
    prompt = reference_prompt(body, encoding_for(route_model(route)))
    output = output_allowance("chat", body, default)
    return Estimate(prompt + output, dearest_cost(route, Usage(prompt, output)))


def route_model(route: ModelRoute) -> str:
    return route.deployments[0].model if route.deployments else route.alias


def new_chars(body: dict[str, Any], remembered: Container[str]) -> int:
    """Characters of the prompt's texts that would be tokenized: those not remembered."""
    return sum(
        len(t) for t in reference_texts(body) if len(t) > REMEMBERED_CHARS or t not in remembered
    )


@settings(max_examples=400, deadline=None)
@given(
    body=chat_bodies,
    route=st.sampled_from(ROUTES),
    default=st.one_of(st.none(), st.integers(0, 10**5)),
)
def test_the_single_pass_estimate_is_the_reference(
    body: dict[str, Any], route: ModelRoute, default: int | None
) -> None:
    """Inline when at most INLINE_COUNT_CHARS of text is still to tokenize, then the
    reference's estimate; else None (a thread counts it), and the thread's is the same."""
    new = new_chars(body, route_facts(route).counter.remembered)
    expected = reference_estimate(body, route, default)
    found = estimate_inline("chat", body, route, default)
    if new > INLINE_COUNT_CHARS:
        assert found is None
    else:
        assert found == expected and type(found) is Estimate
    assert estimate_now("chat", body, route, default) == expected
    assert asyncio.run(estimate("chat", body, route, default)) == expected


class RecordingEncoder:
    """An encoding that notes every text it is asked to tokenize."""

    def __init__(self, name: str) -> None:
        self.encoder = encoding(name)
        self.name = name
        self.encoded: list[str] = []

    def encode(self, text: str, **options: Any) -> list[int]:
        self.encoded.append(text)
        return self.encoder.encode(text, **options)


@settings(max_examples=300, deadline=None)
@given(
    body=chat_bodies,
    known=st.lists(texts, max_size=4),
    bound=st.integers(0, 3 * INLINE_COUNT_CHARS),
)
def test_counting_within_a_bound_never_tokenizes_more(
    body: dict[str, Any], known: list[str], bound: int
) -> None:
    """At most `bound` characters are tokenized, none when over it; remembered texts
    are free; a count, when there is one, is the reference's."""
    recorder = RecordingEncoder("o200k_base")
    counter = TextCounter(cast(tiktoken.Encoding, recorder))
    for text in known:
        counter.count(text)
    recorder.encoded.clear()
    new = new_chars(body, set(known))
    listed = body.get("messages")
    found = count_messages_within(counter, listed if isinstance(listed, list) else (), bound)
    assert sum(map(len, recorder.encoded)) <= bound
    if found is None:
        assert recorder.encoded == [] and new > bound
    else:
        assert new <= bound and found == reference_prompt(body, recorder.encoder)


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("completions", {"prompt": "Hello world", "max_tokens": 5}),
        ("completions", {"prompt": [[1, 2, 3], "hi"], "n": 2}),
        ("embeddings", {"input": ["a", "b"]}),
        ("responses", {"input": [{"role": "user", "content": "hi"}], "max_output_tokens": 9}),
        ("responses", {"input": "plain"}),
    ],
)
def test_other_endpoints_estimate_inline_as_before(
    endpoint: Endpoint, body: dict[str, Any]
) -> None:
    """Short prompts of the other endpoints: inline, the same as the full count."""
    assert estimate_inline(endpoint, body, ROUTE, None) == estimate_now(endpoint, body, ROUTE, None)


@pytest.mark.parametrize("endpoint", ["completions", "embeddings", "responses"])
def test_other_endpoints_long_prompts_go_to_a_thread(endpoint: Endpoint) -> None:
    field = "prompt" if endpoint == "completions" else "input"
    assert estimate_inline(endpoint, {field: "x" * (INLINE_COUNT_CHARS + 1)}, ROUTE, None) is None


def test_a_long_conversation_seen_before_is_estimated_inline() -> None:
    """20 turns of 1 KB each, all remembered: no thread hop for them."""
    turns = [{"role": "user", "content": f"turn {i} " + "words " * 170} for i in range(20)]
    body = {"messages": turns, "max_tokens": 10}
    assert estimate_inline("chat", body, ROUTE, None) is None  # 20 KB of new text
    expected = estimate_now("chat", body, ROUTE, None)
    assert estimate_inline("chat", body, ROUTE, None) == expected


def test_a_completions_batch_allows_output_for_every_prompt() -> None:
    def allowance(prompt: object, **fields: object) -> int:
        return output_allowance("completions", {"prompt": prompt, **fields}, None)

    assert allowance("one", max_tokens=10) == 10
    assert allowance(["a", "b", "c"], max_tokens=10) == 30
    assert allowance([[1, 2], [3], [4]], max_tokens=10, n=2) == 60
    assert allowance([[1, 2]], max_tokens=10, best_of=3, n=2) == 30
    assert allowance([1, 2, 3], max_tokens=10) == 10  # one prompt as token ids
    assert allowance([], max_tokens=10) == 10
    assert allowance(["a", "b"]) == 2 * DEFAULT_OUTPUT_ALLOWANCE
    # chat's messages are one prompt whatever their number
    assert output_allowance("chat", {"messages": [{}, {}], "max_tokens": 10}, None) == 10


def test_output_capped_adds_the_allowance_only_where_the_caller_set_no_cap() -> None:
    hi = {"messages": [{"role": "user", "content": "hi"}]}
    assert output_capped("chat", hi, 50) == {**hi, "max_completion_tokens": 50}
    assert output_capped("chat", hi, None) == {**hi, "max_completion_tokens": 4096}
    assert output_capped("completions", {"prompt": "x"}, 8) == {"prompt": "x", "max_tokens": 8}
    assert output_capped("responses", {"input": "x"}, 8) == {"input": "x", "max_output_tokens": 8}
    for own in ({"max_tokens": 3}, {"max_completion_tokens": 3}):
        assert output_capped("chat", {**hi, **own}, 50) == {**hi, **own}
    assert output_capped("embeddings", {"input": "x"}, 50) == {"input": "x"}
    assert "max_completion_tokens" not in hi  # the caller's body is never changed


@pytest.mark.parametrize(
    ("endpoint", "caps"),
    [
        ("responses", {"max_output_tokens": 5, "max_tokens": 250}),
        ("responses", {"max_output_tokens": 5, "max_completion_tokens": 250}),
        ("completions", {"max_tokens": 5, "max_completion_tokens": 250}),
        ("completions", {"max_tokens": 5, "max_output_tokens": 250}),
        ("chat", {"max_tokens": 5, "max_output_tokens": 250}),
        ("chat", {"max_output_tokens": 250}),
        ("responses", {"max_tokens": 250}),
    ],
)
def test_another_endpoints_cap_is_reserved_for(endpoint: Endpoint, caps: dict[str, int]) -> None:
    """An upstream may honour max_tokens on /v1/responses: the largest cap is reserved."""
    assert output_allowance(endpoint, caps, 100) == 250
    assert output_allowance(endpoint, {**caps, "n": 2}, 100) == 500


def test_a_body_capped_only_by_another_endpoints_field_gets_its_own_at_that_cap() -> None:
    """An upstream that ignores the foreign field is held to the estimate too."""
    assert output_capped("responses", {"max_tokens": 250}, 8) == {
        "max_tokens": 250,
        "max_output_tokens": 250,
    }
    assert output_capped("chat", {"max_output_tokens": 9, "max_tokens": None}, 8) == {
        "max_output_tokens": 9,
        "max_tokens": None,
        "max_completion_tokens": 9,
    }
    both = {"max_tokens": 5, "max_completion_tokens": 250}
    assert output_capped("completions", both, 8) == both  # its own is there: unchanged


@given(
    endpoint=st.sampled_from(["chat", "completions", "responses"]),
    caps=st.fixed_dictionaries(
        {},
        optional={name: st.none() | st.integers(0, 10**6) for name in OUTPUT_CAPS},
    ),
    default=st.none() | st.integers(1, 10**6),
)
def test_what_goes_upstream_never_allows_more_output_than_was_reserved(
    endpoint: Endpoint, caps: dict[str, int | None], default: int | None
) -> None:
    """Whichever cap the upstream honours (or if it honours only the endpoint's own)."""
    body: dict[str, object] = {"messages": [], "prompt": "x", "input": "x", **caps}
    sent = output_capped(endpoint, body, default)
    reserved = output_allowance(endpoint, body, default)
    assert output_allowance(endpoint, sent, default) == reserved
    sent_caps = [sent[f] for f in OUTPUT_CAPS if sent.get(f) is not None]
    assert sent_caps and max(sent_caps) == reserved
    assert any(sent.get(own) is not None for own in OWN_CAPS[endpoint])
