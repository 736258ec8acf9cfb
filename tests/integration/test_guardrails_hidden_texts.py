"""Texts a request sends to the model outside its messages (tool names, schema property
names and patterns, grammars, a web search's location, a file's name, fields the gateway
does not know) and keys hidden in invisible characters are blocked by an input rule: 400
content_policy_violation, and the upstream never sees the request."""

from typing import Any

import orjson
import pytest

from tests.support.gateway import running_gateway
from tests.support.upstream import MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}", api_key: "${{UPSTREAM_KEY}}"}}
models:
  gpt-4o-mini:
    deployments: [{{provider: up, model: upstream-chat}}]
teams:
  demo: {{models: ["*"], guardrails: [g]}}
guardrails:
  g:
    input:
      - {{detector: secrets, action: block}}
"""
KEY = "AKIAIOSFODNN7EXAMPLE"
HI = [{"role": "user", "content": "hi"}]


def function_tool(name: str = "f", parameters: Any = None) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": parameters or {}}}


def schema(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties)}


def custom_tool(definition: str) -> dict[str, Any]:
    grammar = {"syntax": "lark", "definition": definition}
    return {
        "type": "custom",
        "custom": {"name": "g", "format": {"type": "grammar", "grammar": grammar}},
    }


def response_format(body_schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "out", "schema": body_schema}}


# (route, body with the key somewhere the model reads it)
HIDDEN = [
    ("chat/completions", {"messages": HI, "tools": [function_tool(name=KEY)]}),
    (
        "chat/completions",
        {"messages": HI, "tools": [function_tool(parameters=schema({KEY: {"type": "string"}}))]},
    ),
    (
        "chat/completions",
        {
            "messages": HI,
            "tools": [
                function_tool(parameters=schema({"k": {"type": "string", "pattern": f"^{KEY}$"}}))
            ],
        },
    ),
    (
        "chat/completions",
        {"messages": HI, "response_format": response_format(schema({KEY: {"type": "string"}}))},
    ),
    (
        "chat/completions",
        {
            "messages": HI,
            "response_format": response_format(schema({"k": {"type": "string", "pattern": KEY}})),
        },
    ),
    ("chat/completions", {"messages": HI, "tools": [custom_tool(f'start: "{KEY}"')]}),
    (
        "chat/completions",
        {
            "messages": HI,
            "web_search_options": {
                "user_location": {"type": "approximate", "approximate": {"city": KEY}}
            },
        },
    ),
    (
        "chat/completions",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "file", "file": {"filename": f"{KEY}.pdf", "file_data": "data:,x"}}
                    ],
                }
            ]
        },
    ),
    ("chat/completions", {"messages": HI, "foo": KEY}),
    ("chat/completions", {"messages": HI, "guided_json": schema({KEY: {"type": "string"}})}),
    (
        "chat/completions",
        {"messages": HI, "tool_choice": {"type": "function", "function": {"name": KEY}}},
    ),
    ("completions", {"prompt": "hi", "foo": {"bar": [KEY]}}),
    ("responses", {"input": "hi", "tools": [{"type": "function", "name": KEY, "parameters": {}}]}),
    (
        "responses",
        {
            "input": "hi",
            "tools": [
                {"type": "custom", "name": "g", "format": {"type": "grammar", "definition": KEY}}
            ],
        },
    ),
    (
        "responses",
        {
            "input": "hi",
            "text": {
                "format": {
                    "type": "json_schema",
                    "name": "o",
                    "schema": schema({KEY: {"type": "string"}}),
                }
            },
        },
    ),
    (
        "responses",
        {"input": "hi", "tools": [{"type": "web_search", "user_location": {"city": KEY}}]},
    ),
    (
        "responses",
        {
            "input": [
                {
                    "role": "user",
                    "content": [{"type": "input_file", "filename": KEY, "file_data": "x"}],
                }
            ]
        },
    ),
    ("responses", {"input": "hi", "foo": KEY}),
    # Invisible: tag characters spell the key, a Hangul filler splits it.
    (
        "chat/completions",
        {"messages": [{"role": "user", "content": "".join(chr(0xE0000 + ord(c)) for c in KEY)}]},
    ),
    ("chat/completions", {"messages": [{"role": "user", "content": f"{KEY[:8]}\u3164{KEY[8:]}"}]}),
    ("chat/completions", {"messages": [{"role": "user", "content": f"{KEY[:4]}\uffa0{KEY[4:]}"}]}),
    # Variation selectors, combining marks and format characters between its letters.
    *(
        ("chat/completions", {"messages": [{"role": "user", "content": "my key " + c.join(KEY)}]})
        for c in ("\U000e0100", "\U000e01ef", "\ufe20", "\u1dc0", "\u20d0", "\ufff9", "\u0600")
    ),
]


@pytest.fixture
async def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream-secret")
    async with MockUpstream("up") as up:
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            yield gw, up, await gw.token()


@pytest.mark.parametrize(("route", "body"), HIDDEN)
async def test_a_key_the_model_would_read_anywhere_is_blocked(setup, http, route, body):
    """The key hidden in this place is refused with 400 content_policy_violation naming the
    rule, not echoed, and nothing reaches the upstream."""
    gw, up, token = setup
    async with http.post(
        f"{gw.base_url}/{route}",
        json={"model": "gpt-4o-mini", **body},
        headers={"authorization": f"Bearer {token}"},
    ) as response:
        raw = await response.read()
        assert response.status == 400, raw
    error = orjson.loads(raw)["error"]
    assert error["code"] == "content_policy_violation"
    assert "secrets" in error["message"] and KEY not in raw.decode()
    assert up.requests == []


async def test_a_clean_request_with_tools_and_schemas_goes_upstream_unchanged(setup, http):
    """Scanning names, schemas and unknown fields leaves a clean request as written."""
    gw, up, token = setup
    parameters = schema(
        {"city": {"type": ["string", "null"], "format": "date", "pattern": "^[A-Z]"}}
    )
    body = {
        "model": "gpt-4o-mini",
        "messages": HI,
        "tools": [function_tool("get_weather", parameters), custom_tool('start: "a"')],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": response_format(parameters),
        "web_search_options": {
            "user_location": {"type": "approximate", "approximate": {"city": "Oslo"}}
        },
        "chat_template_kwargs": {"enable_thinking": False},
    }
    async with http.post(
        f"{gw.base_url}/chat/completions", json=body, headers={"authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 200, await response.text()
    forwarded = up.requests[0].json
    assert {k: v for k, v in forwarded.items() if k != "model"} == {
        k: v for k, v in body.items() if k != "model"
    }
