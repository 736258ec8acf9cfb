"""The built-in mock provider behaves like OpenAI through the gateway, with the official
openai SDK as the client: output caps cut the reply (finish_reason length), `n` and a
completions prompt list give that many choices, a flat token list is one embedding input;
so budget tests written against the mock see OpenAI's arithmetic."""

from __future__ import annotations

import openai
import pytest

from gateway.limits.plan import Estimate, build_plan
from gateway.limits.token_count import count_text
from tests.support.gateway import RunningGateway, running_gateway

POLICY = """
providers:
  demo: {type: mock}
models:
  offline:
    deployments: [{provider: demo, model: mock-1}]
  embed:
    deployments: [{provider: demo, model: mock-embed}]
teams:
  demo: {models: ["*"]}
  budgeted:
    models: ["*"]
    budgets: [{period: day, tokens: 30}]
"""
HI = [{"role": "user", "content": "hi"}]
WHOLE = "This is the mock provider. You said: hi"
CUT = "This is the"  # its first three tokens


@pytest.fixture
async def gw(tmp_path):
    async with running_gateway(tmp_path, POLICY) as gateway:
        yield gateway


@pytest.fixture
async def client(gw):
    return await gw.openai()


async def day_used(gw: RunningGateway, team: str) -> int:
    rules = gw.services.policy.current().teams[team]
    plan = build_plan(rules, "tester", Estimate(0, 0), gw.services.limits.clock(), timezone="UTC")
    counter = (await gw.services.limits.snapshot(plan)).budgets[0]
    assert counter is not None
    return counter.used


def chat_texts(chunks) -> dict[int, str]:
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    return texts


def finish_reasons(chunks) -> dict[int, str]:
    return {c.index: c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason}


# 1. Output caps


@pytest.mark.parametrize("cap", ["max_tokens", "max_completion_tokens"])
async def test_a_chat_cap_cuts_the_reply_at_that_many_tokens(client, cap):
    """max_tokens=3 gets three tokens of the reply and finish_reason length."""
    completion = await client.chat.completions.create(model="offline", messages=HI, **{cap: 3})
    assert completion.choices[0].message.content == CUT
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 3


async def test_a_streamed_chat_cap_cuts_the_reply(client):
    stream = await client.chat.completions.create(
        model="offline",
        messages=HI,
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chat_texts(chunks) == {0: CUT}
    assert finish_reasons(chunks) == {0: "length"}
    assert chunks[-1].usage.completion_tokens == 3


async def test_a_cap_cuts_exactly_when_the_reply_is_longer(client):
    """One token short of the reply: cut, finish_reason length; the reply's own length:
    the whole reply, finish_reason stop."""
    whole = count_text(WHOLE, "mock-1")
    short = await client.chat.completions.create(model="offline", messages=HI, max_tokens=whole - 1)
    assert (
        WHOLE.startswith(short.choices[0].message.content)
        and short.choices[0].message.content != WHOLE
    )
    assert short.choices[0].finish_reason == "length"
    assert short.usage.completion_tokens == whole - 1
    fits = await client.chat.completions.create(model="offline", messages=HI, max_tokens=whole)
    assert fits.choices[0].message.content == WHOLE
    assert fits.choices[0].finish_reason == "stop"
    assert fits.usage.completion_tokens == whole


async def test_a_completions_cap_cuts_the_text_whole_and_streamed(client):
    whole = await client.completions.create(model="offline", prompt="hi", max_tokens=3)
    assert (whole.choices[0].text, whole.choices[0].finish_reason) == (CUT, "length")
    assert whole.usage.completion_tokens == 3
    stream = await client.completions.create(
        model="offline",
        prompt="hi",
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(c.text for chunk in chunks for c in chunk.choices) == CUT
    assert [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason] == [
        "length"
    ]
    assert chunks[-1].usage.completion_tokens == 3


async def test_a_responses_cap_leaves_the_response_incomplete(client):
    """max_output_tokens cuts the text; status incomplete, reason max_output_tokens."""
    response = await client.responses.create(model="offline", input="hi", max_output_tokens=3)
    assert response.output_text == CUT
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 3


async def test_a_streamed_responses_cap_ends_with_response_incomplete(client):
    """The last event is response.incomplete, as OpenAI's (the SDK helper's
    get_final_response() wants response.completed, so the event's response is read)."""
    async with client.responses.stream(model="offline", input="hi", max_output_tokens=3) as stream:
        events = [event async for event in stream]
    assert events[-1].type == "response.incomplete"
    final = events[-1].response
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == CUT
    assert final.output_text == CUT
    assert final.status == "incomplete"
    assert final.incomplete_details.reason == "max_output_tokens"
    assert final.usage.output_tokens == 3


@pytest.mark.parametrize("stream", [False, True])
async def test_a_capped_team_never_spends_past_its_budget(gw, stream):
    """A 30-token day budget, spent with max_tokens=3 until refused: never over 30."""
    client = await gw.openai("budgeted")
    refused = None
    for _ in range(10):
        try:
            reply = await client.chat.completions.create(
                model="offline", messages=HI, max_tokens=3, stream=stream
            )
            if stream:
                _ = [chunk async for chunk in reply]
        except openai.RateLimitError as error:
            refused = error
            break
    assert refused is not None and refused.code == "insufficient_quota"
    assert await day_used(gw, "budgeted") <= 30


# 2. n choices


async def test_n_gives_that_many_chat_choices(client):
    completion = await client.chat.completions.create(model="offline", messages=HI, n=2)
    assert [c.index for c in completion.choices] == [0, 1]
    assert [c.message.content for c in completion.choices] == [WHOLE, WHOLE]
    assert completion.usage.completion_tokens == 2 * count_text(WHOLE, "mock-1")


async def test_n_streams_each_choice_under_its_index(client):
    stream = await client.chat.completions.create(
        model="offline",
        messages=HI,
        n=3,
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert all(len(chunk.choices) <= 1 for chunk in chunks)
    assert chat_texts(chunks) == {0: CUT, 1: CUT, 2: CUT}
    assert finish_reasons(chunks) == {0: "length", 1: "length", 2: "length"}
    assert chunks[-1].usage.completion_tokens == 9


async def test_n_gives_that_many_completions_whole_and_streamed(client):
    whole = await client.completions.create(model="offline", prompt="hi", n=2)
    assert [(c.index, c.text) for c in whole.choices] == [(0, WHOLE), (1, WHOLE)]
    assert whole.usage.completion_tokens == 2 * count_text(WHOLE, "mock-1")
    stream = await client.completions.create(model="offline", prompt="hi", n=2, stream=True)
    texts: dict[int, str] = {}
    async for chunk in stream:
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + c.text
    assert texts == {0: WHOLE, 1: WHOLE}


# 3. A completions prompt list


async def test_a_prompt_list_gets_one_choice_per_prompt_times_n(client):
    """index = prompt_index * n + i, each answering its own prompt."""
    whole = await client.completions.create(model="offline", prompt=["a", "b"], n=2)
    said = [c.text.rsplit(": ", 1)[-1] for c in whole.choices]
    assert [c.index for c in whole.choices] == [0, 1, 2, 3]
    assert said == ["a", "a", "b", "b"]
    one = count_text("This is the mock provider. You said: a", "mock-1")
    assert whole.usage.completion_tokens == 4 * one


async def test_a_streamed_prompt_list_gets_one_choice_per_prompt(client):
    stream = await client.completions.create(
        model="offline", prompt=["a", "b"], max_tokens=50, stream=True
    )
    texts: dict[int, str] = {}
    async for chunk in stream:
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + c.text
    assert texts == {
        0: "This is the mock provider. You said: a",
        1: "This is the mock provider. You said: b",
    }


async def test_a_token_prompt_list_is_one_prompt_per_token_list(client):
    single = await client.completions.create(model="offline", prompt=[1, 2, 3])
    batch = await client.completions.create(model="offline", prompt=[[1, 2], [3]])
    assert len(single.choices) == 1
    assert len(batch.choices) == 2


# 4. Embeddings of token ids


async def test_a_flat_token_list_is_one_embedding(client):
    """input=[1, 2, 3] is one tokenized input; a list of token lists is several."""
    one = await client.embeddings.create(model="embed", input=[1, 2, 3])
    two = await client.embeddings.create(model="embed", input=[[1, 2], [3]])
    assert [d.index for d in one.data] == [0]
    assert [d.index for d in two.data] == [0, 1]
