"""Request bodies the gateway must refuse before any upstream call, as OpenAI would,
and the bodies and clients that used to end in a 500 or an unbounded echo.

A real gateway on 127.0.0.1 in front of the mock upstream (which records every call);
the official openai SDK or raw HTTP as the client.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from gateway.api.body import MAX_DEPTH
from tests.support.gateway import running_gateway
from tests.support.upstream import MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  m:
    deployments: [{{provider: up, model: gpt-4o-mini}}]
  e:
    deployments: [{{provider: up, model: text-embedding-3-small}}]
teams:
  demo: {{models: [m, e]}}
  budgeted:
    models: [m]
    max_tokens_default: 100
    budgets: [{{period: day, tokens: 200}}]
"""
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
COMPLETION = {"model": "m", "prompt": "hi"}
EMBEDDING = {"model": "e", "input": "hi"}
RESPONSE = {"model": "m", "input": "hi"}
PATHS = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
    "responses": "/responses",
}
GOOD = {"chat": CHAT, "completions": COMPLETION, "embeddings": EMBEDDING, "responses": RESPONSE}
ACCESS_LOG = "access.log"


@pytest.fixture
async def up():
    async with MockUpstream() as upstream:
        yield upstream


@pytest.fixture
async def gw(tmp_path, up):
    async with running_gateway(
        tmp_path,
        POLICY.format(base=up.base_url),
        access_log=str(tmp_path / ACCESS_LOG),
        max_body_bytes=4 * 1024 * 1024,
    ) as gateway:
        gateway.http = aiohttp.ClientSession()
        gateway.auth = {"authorization": f"Bearer {await gateway.token()}"}
        yield gateway
        await gateway.http.close()


async def post(gw, path: str, body: Any, auth: dict[str, str] | None = None) -> tuple[int, bytes]:
    data: Any = body if isinstance(body, bytes) else json.dumps(body).encode()
    if len(data) > 64 * 1024:
        data = io.BytesIO(data)  # aiohttp warns about large raw bytes
    headers = {**(auth or gw.auth), "content-type": "application/json"}
    async with gw.http.post(gw.base_url + path, data=data, headers=headers) as response:
        return response.status, await response.read()


def access_lines(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / ACCESS_LOG
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def access_line_count(tmp_path: Path, n: int, within_s: float = 5.0) -> list[dict[str, Any]]:
    """The access log once it holds `n` lines (it is written in batches)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while len(lines := access_lines(tmp_path)) < n:
        assert asyncio.get_running_loop().time() < deadline, lines
        await asyncio.sleep(0.05)
    return lines


# (endpoint, changed fields, param, code, words in the message)
REFUSED = [
    ("chat", {"max_tokens": "100"}, "max_tokens", "invalid_type", "but got a string instead"),
    ("chat", {"max_tokens": 10.5}, "max_tokens", "invalid_type", "expected an integer"),
    ("chat", {"max_tokens": True}, "max_tokens", "invalid_type", "but got a boolean instead"),
    ("chat", {"max_tokens": -1}, "max_tokens", "integer_below_min_value", ">= 1, but got -1"),
    ("chat", {"max_tokens": 0}, "max_tokens", "integer_below_min_value", "got 0 instead"),
    ("chat", {"max_completion_tokens": "x"}, "max_completion_tokens", "invalid_type", "integer"),
    (
        "chat",
        {"max_completion_tokens": -5},
        "max_completion_tokens",
        "integer_below_min_value",
        "-5",
    ),
    ("chat", {"n": 0}, "n", "integer_below_min_value", "Invalid 'n': integer below minimum value"),
    ("chat", {"n": 1.5}, "n", "invalid_type", "expected an integer"),
    ("chat", {"n": "2"}, "n", "invalid_type", "expected an integer"),
    ("chat", {"messages": []}, "messages", "empty_array", "empty array"),
    ("chat", {"stream": "yes"}, "stream", "invalid_type", "expected a boolean"),
    ("chat", {"stream_options": []}, "stream_options", "invalid_type", "expected an object"),
    ("chat", {"temperature": "hot"}, "temperature", "invalid_type", "expected a number"),
    ("chat", {"top_p": [1]}, "top_p", "invalid_type", "but got an array instead"),
    ("completions", {"prompt": []}, "prompt", "empty_array", "empty array"),
    ("completions", {"max_tokens": -1}, "max_tokens", "integer_below_min_value", ">= 0"),
    ("completions", {"n": 0}, "n", "integer_below_min_value", ">= 1"),
    ("embeddings", {"input": []}, "input", "empty_array", "empty array"),
    ("embeddings", {"input": [[]]}, "input[0]", "empty_array", "empty array"),
    ("embeddings", {"input": ""}, "input", None, "empty string"),
    ("embeddings", {"input": ["a", ""]}, "input[1]", None, "empty string"),
    ("embeddings", {"input": [{"text": "a"}]}, "input[0]", "invalid_type", "an object"),
    ("responses", {"max_output_tokens": "9"}, "max_output_tokens", "invalid_type", "a string"),
    ("responses", {"max_output_tokens": 0}, "max_output_tokens", "integer_below_min_value", ">= 1"),
    ("responses", {"temperature": None, "top_p": True}, "top_p", "invalid_type", "a boolean"),
    ("chat", {"stop": 5}, "stop", "invalid_type", "a string or an array of strings"),
    ("chat", {"stop": [1, 2]}, "stop[0]", "invalid_type", "expected a string"),
    ("chat", {"stop": list("abcde")}, "stop", "array_above_max_length", "maximum length 4"),
    ("completions", {"stop": {"a": 1}}, "stop", "invalid_type", "but got an object instead"),
    ("chat", {"tools": "x"}, "tools", "invalid_type", "expected an array"),
    ("chat", {"tools": {"a": 1}}, "tools", "invalid_type", "but got an object instead"),
    ("chat", {"tools": [5]}, "tools[0]", "invalid_type", "expected an object"),
    ("chat", {"tool_choice": 5}, "tool_choice", "invalid_type", "a string or an object"),
    ("chat", {"response_format": "json"}, "response_format", "invalid_type", "an object"),
    (
        "chat",
        {"messages": [{"role": "user", "content": 5}]},
        "messages[0].content",
        "invalid_type",
        "a string or an array of content parts",
    ),
    (
        "chat",
        {"messages": [{"role": "user", "content": {"a": 1}}]},
        "messages[0].content",
        "invalid_type",
        "but got an object instead",
    ),
    (
        "chat",
        {"messages": [{"role": "user", "content": ["hi"]}]},
        "messages[0].content[0]",
        "invalid_type",
        "expected an object",
    ),
    (
        "chat",
        {"messages": [{"role": "bogus", "content": "hi"}]},
        "messages[0].role",
        "invalid_value",
        "Invalid value: 'bogus'. Supported values are: 'system', 'assistant', 'user', "
        "'function', 'tool', and 'developer'.",
    ),
    ("chat", {"user": 5}, "user", "invalid_type", "expected a string"),
    ("chat", {"seed": "x"}, "seed", "invalid_type", "expected an integer"),
    ("chat", {"logit_bias": [1]}, "logit_bias", "invalid_type", "expected an object"),
    ("chat", {"n": 129}, "n", "integer_above_max_value", "<= 128, but got 129"),
    ("completions", {"n": 129}, "n", "integer_above_max_value", "<= 128"),
    ("completions", {"best_of": "x"}, "best_of", "invalid_type", "expected an integer"),
    ("completions", {"best_of": -1}, "best_of", "integer_below_min_value", ">= 1"),
    ("completions", {"best_of": 0}, "best_of", "integer_below_min_value", ">= 1"),
    ("completions", {"best_of": 2.5}, "best_of", "invalid_type", "expected an integer"),
    ("completions", {"best_of": 21}, "best_of", "integer_above_max_value", "<= 20"),
    ("completions", {"best_of": 2, "n": 3}, "best_of", "invalid_value", "greater than or equal"),
    ("embeddings", {"encoding_format": 5}, "encoding_format", "invalid_type", "'float'"),
    (
        "embeddings",
        {"encoding_format": "int8"},
        "encoding_format",
        "invalid_value",
        "Supported values are: 'float' and 'base64'.",
    ),
    ("embeddings", {"dimensions": "x"}, "dimensions", "invalid_type", "expected an integer"),
    ("embeddings", {"dimensions": -3}, "dimensions", "integer_below_min_value", ">= 1"),
    ("embeddings", {"input": [[1, "a"], [None]]}, "input[0][1]", "invalid_type", "an integer"),
    ("embeddings", {"input": [[1], [None]]}, "input[1][0]", "invalid_type", "but got null"),
    ("responses", {"input": 5}, "input", "invalid_type", "a string or an array"),
    ("responses", {"instructions": 5}, "instructions", "invalid_type", "expected a string"),
    ("responses", {"tools": "x"}, "tools", "invalid_type", "expected an array"),
    ("responses", {"max_tokens": "250"}, "max_tokens", "invalid_type", "a string"),
    (
        "responses",
        {"max_completion_tokens": 0},
        "max_completion_tokens",
        "integer_below_min_value",
        ">= 1",
    ),
    (
        "completions",
        {"max_completion_tokens": 2.5},
        "max_completion_tokens",
        "invalid_type",
        "integer",
    ),
    (
        "completions",
        {"max_output_tokens": -1},
        "max_output_tokens",
        "integer_below_min_value",
        ">= 0",
    ),
    (
        "chat",
        {"max_output_tokens": 1_048_577},
        "max_output_tokens",
        "integer_above_max_value",
        "<= 1048576",
    ),
    ("responses", {"background": "true"}, "background", "invalid_type", "expected a boolean"),
    ("responses", {"background": 1}, "background", "invalid_type", "but got an integer"),
    ("responses", {"background": True}, "background", None, "not supported"),
    ("responses", {"store": "false"}, "store", "invalid_type", "expected a boolean"),
    ("responses", {"parallel_tool_calls": 0}, "parallel_tool_calls", "invalid_type", "boolean"),
    ("chat", {"store": "true"}, "store", "invalid_type", "expected a boolean"),
    ("chat", {"logprobs": 1}, "logprobs", "invalid_type", "expected a boolean"),
    ("chat", {"parallel_tool_calls": "no"}, "parallel_tool_calls", "invalid_type", "boolean"),
    ("completions", {"echo": "true"}, "echo", "invalid_type", "expected a boolean"),
    ("completions", {"stream": 1}, "stream", "invalid_type", "expected a boolean"),
    ("completions", {"logprobs": True}, "logprobs", "invalid_type", "expected an integer"),
    # OpenAI's documented ranges (OpenAI refuses values outside them with these codes).
    ("chat", {"temperature": 5}, "temperature", "decimal_above_max_value", "<= 2, but got 5"),
    ("chat", {"temperature": -0.1}, "temperature", "decimal_below_min_value", ">= 0"),
    ("chat", {"top_p": 1.5}, "top_p", "decimal_above_max_value", "<= 1, but got 1.5"),
    ("chat", {"presence_penalty": 2.5}, "presence_penalty", "decimal_above_max_value", "<= 2"),
    ("chat", {"frequency_penalty": -3}, "frequency_penalty", "decimal_below_min_value", ">= -2"),
    ("chat", {"presence_penalty": "x"}, "presence_penalty", "invalid_type", "a number"),
    ("completions", {"temperature": 2.01}, "temperature", "decimal_above_max_value", "<= 2"),
    ("completions", {"frequency_penalty": 9}, "frequency_penalty", "decimal_above_max_value", "2"),
    ("responses", {"top_p": -1}, "top_p", "decimal_below_min_value", ">= 0"),
    ("responses", {"temperature": 3}, "temperature", "decimal_above_max_value", "<= 2"),
    (
        "chat",
        {"messages": [{"role": "user"}]},
        "messages[0].content",
        None,
        "Missing required parameter: 'messages[0].content'.",
    ),
    (
        "chat",
        {"messages": [{"role": "system", "content": None}, {"role": "user", "content": "hi"}]},
        "messages[0].content",
        None,
        "Missing required parameter",
    ),
    ("chat", {"messages": [{"role": "developer"}]}, "messages[0].content", None, "Missing"),
    (
        "chat",
        {"messages": [{"role": "tool", "tool_call_id": "call_1"}]},
        "messages[0].content",
        None,
        "Missing required parameter",
    ),
    (
        "chat",
        {"messages": [{"role": "tool", "content": "42"}]},
        "messages[0].tool_call_id",
        None,
        "Missing required parameter: 'messages[0].tool_call_id'.",
    ),
    ("embeddings", {"input": [1, "a"]}, "input[1]", "invalid_type", "a token id like 'input[0]'"),
    ("embeddings", {"input": ["a", 1]}, "input[1]", "invalid_type", "a string like 'input[0]'"),
    (
        "chat",
        {"stream_options": {"include_usage": True}},
        "stream_options",
        None,
        "only allowed when 'stream' is enabled",
    ),
    (
        "completions",
        {"stream": False, "stream_options": {"include_usage": True}},
        "stream_options",
        None,
        "only allowed when 'stream' is enabled",
    ),
]


@pytest.mark.parametrize(
    ("endpoint", "changes", "param", "code", "fragment"),
    REFUSED,
    ids=[f"{e}-{'-'.join(c)}-{json.dumps(list(c.values()))}" for e, c, *_ in REFUSED],
)
async def test_bad_fields_are_400_naming_the_field_and_never_reach_the_upstream(
    gw, up, endpoint, changes, param, code, fragment
):
    """Each bad field: 400 invalid_request_error with OpenAI's param and code, no upstream call."""
    status, raw = await post(gw, PATHS[endpoint], {**GOOD[endpoint], **changes})
    assert status == 400, raw
    error = json.loads(raw)["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        param,
        code,
    )
    assert fragment in error["message"]
    assert up.requests == []


ACCEPTED = [
    ("chat", {"max_tokens": 1, "max_completion_tokens": 5, "n": 1}),
    ("chat", {"max_tokens": 10.0}),  # a whole number written as a decimal
    ("chat", {"max_tokens": None, "n": None, "temperature": 0, "top_p": 0.5}),
    ("completions", {"max_tokens": 0, "prompt": ["a", "b"]}),
    ("completions", {"prompt": [[1, 2], [3]]}),
    ("embeddings", {"input": ["a", "b"]}),
    ("embeddings", {"input": [1, 2, 3]}),
    ("embeddings", {"input": [[1, 2], [3]]}),
    ("responses", {"max_output_tokens": 16, "temperature": 1.5}),
    (
        "chat",
        {
            "stop": ["a", "b", "c", "d"],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": "auto",
            "response_format": {"type": "json_object"},
            "user": "u",
            "seed": -7,
            "logit_bias": {"50256": -100},
            "n": 128,
        },
    ),
    (
        "chat",
        {
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": None, "tool_calls": []},
            ]
        },
    ),
    (
        "chat",
        {
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function"}]},
                {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
            ],
            "temperature": 2,
            "top_p": 0,
            "presence_penalty": -2,
            "frequency_penalty": 2.0,
        },
    ),
    ("completions", {"temperature": 0.0, "top_p": 1, "presence_penalty": 1.5}),
    ("completions", {"stop": "\n", "best_of": 3, "n": 2}),
    ("embeddings", {"encoding_format": "base64", "dimensions": 8, "input": [[1, 2]]}),
    ("responses", {"input": [{"role": "user", "content": "hi"}], "instructions": "x"}),
    ("responses", {"tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}}),
    ("responses", {"background": False, "store": False, "parallel_tool_calls": True}),
    ("chat", {"store": False, "logprobs": True, "parallel_tool_calls": False}),
    ("completions", {"echo": True, "logprobs": 2}),
]


@pytest.mark.parametrize(
    ("endpoint", "changes"), ACCEPTED, ids=[f"{e}-{json.dumps(c)}" for e, c in ACCEPTED]
)
async def test_good_fields_reach_the_upstream_unchanged(gw, up, endpoint, changes):
    """Valid values are forwarded as sent."""
    status, raw = await post(gw, PATHS[endpoint], {**GOOD[endpoint], **changes})
    assert status == 200, raw
    assert len(up.requests) == 1
    sent = up.requests[0].json
    assert {k: sent.get(k) for k in changes} == changes


EMBEDDING_ITEMS = ["text", "token-ids", "token-arrays"]


def embedding_items(kind: str, count: int) -> list[Any]:
    return {"text": ["hi"], "token-ids": [1], "token-arrays": [[1, 2]]}[kind] * count


@pytest.mark.parametrize("kind", EMBEDDING_ITEMS)
async def test_an_embeddings_input_of_2049_items_is_400_and_never_reaches_the_upstream(
    gw, up, kind
):
    """OpenAI embeds at most 2048 inputs a request: 2049 get its 400 naming `input`."""
    status, raw = await post(gw, "/embeddings", {**EMBEDDING, "input": embedding_items(kind, 2049)})
    assert status == 400, raw
    error = json.loads(raw)["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "input",
        "array_above_max_length",
    )
    assert "maximum length 2048, but got an array with length 2049" in error["message"]
    assert up.requests == []


@pytest.mark.parametrize("kind", EMBEDDING_ITEMS)
async def test_an_embeddings_input_of_2048_items_is_forwarded(gw, up, kind):
    """2048 inputs, the most OpenAI takes, reach the upstream as sent."""
    items = embedding_items(kind, 2048)
    status, raw = await post(gw, "/embeddings", {**EMBEDDING, "input": items})
    assert status == 200, raw
    assert [r.json["input"] for r in up.requests] == [items]


# A 200-token day budget: each body's own cap (5) fits, its other endpoint's cap (250) does not.
FOREIGN_CAPS = [
    ("responses", {"max_output_tokens": 5}, {"max_tokens": 250}),
    ("responses", {"max_output_tokens": 5}, {"max_completion_tokens": 250}),
    ("completions", {"max_tokens": 5}, {"max_completion_tokens": 250}),
    ("completions", {"max_tokens": 5}, {"max_output_tokens": 250}),
    ("chat", {"max_tokens": 5}, {"max_output_tokens": 250}),
]


@pytest.mark.parametrize(
    ("endpoint", "own", "foreign"),
    FOREIGN_CAPS,
    ids=[f"{e}-{next(iter(f))}" for e, _, f in FOREIGN_CAPS],
)
async def test_another_endpoints_cap_is_reserved_for(gw, up, endpoint, own, foreign):
    """An upstream may honour max_tokens on /v1/responses: the largest cap a body carries
    is what is reserved, so 250 beside 5 is more than a 200-token budget, no upstream call."""
    auth = {"authorization": f"Bearer {await gw.token('budgeted')}"}
    status, raw = await post(gw, PATHS[endpoint], {**GOOD[endpoint], **own}, auth)
    assert status == 200, raw
    status, raw = await post(gw, PATHS[endpoint], {**GOOD[endpoint], **own, **foreign}, auth)
    assert status == 429, raw
    error = json.loads(raw)["error"]
    assert error["code"] == "insufficient_quota"
    assert "more than the whole day token budget" in error["message"]
    assert len(up.requests) == 1


@pytest.mark.parametrize(
    ("endpoint", "foreign", "own"),
    [
        ("responses", "max_tokens", "max_output_tokens"),
        ("completions", "max_output_tokens", "max_tokens"),
        ("chat", "max_output_tokens", "max_completion_tokens"),
    ],
)
async def test_a_body_capped_only_by_another_endpoints_field_gets_its_own_cap_too(
    gw, up, endpoint, foreign, own
):
    """Reserved at the caller's 50, and an upstream that ignores the other endpoint's field
    is held to 50 by the endpoint's own cap (not left uncapped, nor given the default)."""
    auth = {"authorization": f"Bearer {await gw.token('budgeted')}"}
    status, raw = await post(gw, PATHS[endpoint], {**GOOD[endpoint], foreign: 50}, auth)
    assert status == 200, raw
    sent = up.requests[0].json
    assert (sent[foreign], sent[own]) == (50, 50)


async def test_the_sdk_gets_bad_request_error_with_param_and_code(gw, up):
    """What an openai SDK user sees for max_tokens=-1 and an empty embeddings input."""
    client = await gw.openai()
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=-1
        )
    assert (refused.value.param, refused.value.code) == ("max_tokens", "integer_below_min_value")
    with pytest.raises(openai.BadRequestError) as refused:
        await client.embeddings.create(model="e", input=[])
    assert (refused.value.param, refused.value.code) == ("input", "empty_array")
    assert up.requests == []


def nested(depth: int) -> bytes:
    """A chat body whose `tools` value (one tool object holding arrays in arrays) nests so
    that the whole body is `depth` levels."""
    inner = b"[" * (depth - 3) + b"]" * (depth - 3)
    return (
        b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [{"a": '
        + inner
        + b"}]}"
    )


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 255, 256, 1024])
async def test_a_body_nested_too_deep_is_400_not_500(gw, up, depth):
    """Nesting the gateway could parse but not forward: 400 nesting_too_deep naming the field."""
    status, raw = await post(gw, "/chat/completions", nested(depth))
    assert status == 400, raw
    error = json.loads(raw)["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "tools",
        "nesting_too_deep",
    )
    assert up.requests == []


async def test_a_body_at_the_depth_limit_is_forwarded(gw, up):
    """MAX_DEPTH levels are forwarded intact (the upstream gets the same structure)."""
    status, raw = await post(gw, "/chat/completions", nested(MAX_DEPTH))
    assert status == 200, raw
    tools = up.requests[0].json["tools"][0]["a"]
    for _ in range(MAX_DEPTH - 4):
        (tools,) = tools
    assert tools == []


@pytest.mark.parametrize(
    ("literal", "words"),
    [
        (b"18446744073709551616", "above maximum"),
        (b"123456789012345678901234567890", "above maximum"),
        (b"-9223372036854775809", "below minimum"),
        (b"9" * 5000, "(cut, 5000 characters)"),
    ],
    ids=["2**64", "30-digits", "below-int64", "5000-digits"],
)
async def test_an_integer_beyond_64_bits_is_refused_naming_the_field(gw, up, literal, words):
    """Not silently forwarded as a float: 400 naming the field, no upstream call."""
    body = (
        b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "seed": ' + literal + b"}"
    )
    status, raw = await post(gw, "/chat/completions", body)
    assert status == 400, raw
    error = json.loads(raw)["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", "seed", None)
    assert words in error["message"]
    assert len(raw) < 2048
    assert up.requests == []


async def test_a_nested_big_integer_is_named_by_its_path(gw, up):
    meta = {"k": [1, {"n": 10**25}]}
    status, raw = await post(gw, "/chat/completions", {**CHAT, "metadata": meta})
    assert status == 400
    assert json.loads(raw)["error"]["param"] == "metadata.k[1].n"


BEYOND_A_BOUND = [
    ("chat", "max_tokens", 2**70, "above", 1_048_576),
    ("chat", "max_completion_tokens", 2**64, "above", 1_048_576),
    ("chat", "n", 2**70, "above", 128),
    ("chat", "max_tokens", -(2**70), "below", 1),
    ("completions", "max_tokens", 2**70, "above", 1_048_576),
    ("completions", "best_of", 2**70, "above", 20),
    ("responses", "max_output_tokens", 2**70, "above", 1_048_576),
    ("embeddings", "dimensions", -(2**64), "below", 1),
]


@pytest.mark.parametrize(
    ("endpoint", "field", "value", "side", "bound"),
    BEYOND_A_BOUND,
    ids=[f"{e}-{f}-{v}" for e, f, v, *_ in BEYOND_A_BOUND],
)
async def test_an_integer_beyond_64_bits_in_a_bounded_field_is_refused_by_its_bound(
    gw, up, endpoint, field, value, side, bound
):
    """max_tokens 2**70 gets what max_tokens 1048577 gets: the field's bound and code (it
    was "<= 18446744073709551615" with code null)."""
    past = bound + 1 if side == "above" else bound - 1
    answers = []
    for sent in (past, value):
        status, raw = await post(gw, PATHS[endpoint], {**GOOD[endpoint], field: sent})
        assert status == 400, raw
        answers.append(json.loads(raw)["error"])
    expected = answers[0] | {"message": answers[0]["message"].replace(str(past), str(value))}
    assert answers[1] == expected
    sign = "<=" if side == "above" else ">="
    assert f"Expected a value {sign} {bound}, but got {value} instead." in expected["message"]
    assert (expected["param"], expected["code"]) == (
        field,
        f"integer_{side}_{'max' if side == 'above' else 'min'}_value",
    )
    assert up.requests == []


async def test_an_integer_too_long_for_orjson_in_a_bounded_field_is_refused_by_its_bound(gw, up):
    """5000 digits (orjson cannot parse them at all) in max_tokens: its bound, the digits cut."""
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": '
    status, raw = await post(gw, "/chat/completions", body + b"9" * 5000 + b"}")
    assert status == 400, raw
    error = json.loads(raw)["error"]
    assert (error["param"], error["code"]) == ("max_tokens", "integer_above_max_value")
    assert error["message"].startswith(
        "Invalid 'max_tokens': integer above maximum value. Expected a value <= 1048576, but got"
    )
    assert "(cut, 5000 characters)" in error["message"] and len(raw) < 2048
    assert up.requests == []


async def test_an_integer_beyond_64_bits_in_an_unbounded_field_names_the_field(gw, up):
    """embeddings' dimensions has no maximum: 400 naming it and the range the gateway carries."""
    status, raw = await post(gw, PATHS["embeddings"], {**EMBEDDING, "dimensions": 2**70})
    assert status == 400, raw
    error = json.loads(raw)["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "dimensions",
        None,
    )
    assert "Invalid 'dimensions': integer above maximum value." in error["message"]
    assert up.requests == []


async def test_64_bit_integers_and_long_digit_strings_are_forwarded_exactly(gw, up):
    """The edges of the 64-bit range, and 19+ digits inside a string, reach the upstream as sent."""
    body = {**CHAT, "seed": 2**64 - 1, "user": "9" * 40, "metadata": {"low": -(2**63)}}
    status, raw = await post(gw, "/chat/completions", body)
    assert status == 200, raw
    sent = up.requests[0].json
    assert (sent["seed"], sent["user"], sent["metadata"]) == (
        2**64 - 1,
        "9" * 40,
        {"low": -(2**63)},
    )


async def hang_up_mid_upload(
    gw, path: str, headers: dict[str, str], declared: int = 100_000
) -> None:
    """Send headers announcing `declared` bytes, then 1,000 of them, then close."""
    host, port = gw.origin.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {declared}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + b'{"model": "' + b"x" * 989)
    await writer.drain()
    await asyncio.sleep(0.2)  # the gateway is waiting for the rest
    writer.close()
    await writer.wait_closed()


@pytest.mark.parametrize(
    ("path", "scopes"),
    [("/v1/chat/completions", ["gateway:invoke"]), ("/admin/clients", ["gateway:admin"])],
    ids=["inference", "admin"],
)
async def test_a_client_hanging_up_mid_upload_is_499_without_a_traceback(
    gw, up, tmp_path, caplog, path, scopes
):
    """A client disconnect, not a gateway error: access line 499 client_disconnected, no trace."""
    caplog.set_level(logging.DEBUG)
    token = await gw.token(scopes=scopes)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    await hang_up_mid_upload(gw, path, headers)
    (line,) = await access_line_count(tmp_path, 1)
    assert (line["status"], line["outcome"], line["error_code"]) == (
        499,
        "client_disconnected",
        None,
    )
    await asyncio.sleep(0.1)  # anything logged after the line would be logged by now
    assert [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= 40] == []
    assert up.requests == []
    status, _ = await post(gw, PATHS["chat"], CHAT)  # and it keeps serving
    assert status == 200


async def test_a_client_hanging_up_mid_token_request_is_499_without_a_traceback(
    gw, tmp_path, caplog
):
    """/oauth/token reads its form itself: the same hang-up is the same 499 line, no trace."""
    caplog.set_level(logging.DEBUG)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    await hang_up_mid_upload(gw, "/oauth/token", form, declared=10_000)  # under its 16 KiB
    (line,) = await access_line_count(tmp_path, 1)
    assert (line["path"], line["status"], line["outcome"]) == (
        "/oauth/token",
        499,
        "client_disconnected",
    )
    await asyncio.sleep(0.1)
    assert [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= 40] == []


MIB = 1024 * 1024


async def test_a_megabyte_model_name_gets_a_short_404_and_a_short_access_line(gw, up, tmp_path):
    """The caller's text is echoed and logged cut to a bound, marked as cut."""
    status, raw = await post(gw, "/chat/completions", {**CHAT, "model": "a" * MIB})
    assert status == 404
    assert len(raw) < 2048
    error = json.loads(raw)["error"]
    assert error["code"] == "model_not_found"
    assert f"(cut, {MIB} characters)" in error["message"]
    (line,) = await access_line_count(tmp_path, 1)
    assert len(json.dumps(line)) < 2048
    assert line["model"].endswith(f"(cut, {MIB} characters)")


async def test_other_echoed_caller_text_is_bounded(gw, tmp_path):
    """Unknown paths, unknown models by path, content types: short bodies whatever was sent."""
    long = "b" * 4000  # under any sane request-line limit, far over the echo bound
    async with gw.http.get(f"{gw.base_url}/models/{long}", headers=gw.auth) as response:
        assert response.status == 404
        assert len(await response.read()) < 2048
    async with gw.http.get(f"{gw.origin}/{long}", headers=gw.auth) as response:
        assert response.status == 404
        assert len(await response.read()) < 2048
    headers = {**gw.auth, "content-type": "text/" + long}
    async with gw.http.post(gw.base_url + "/chat/completions", data=b"{}", headers=headers) as r:
        assert r.status == 400
        assert len(await r.read()) < 2048
    lines = await access_line_count(tmp_path, 3)
    assert all(len(json.dumps(line)) < 2048 for line in lines)
