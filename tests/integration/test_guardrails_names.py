"""Names a request gives the upstream (tools', schema properties', a format's) are checked
one by one and never renamed: a redact rule that matches one refuses the request (400
content_policy_violation naming the rule), a block rule blocks, a flag rule records; and
keys the gateway does not know inside messages, parts, tools and stream_options are
scanned as unknown top-level fields are."""

from typing import Any

import openai
import orjson
import pytest
from pydantic import BaseModel

from tests.support.gateway import running_gateway
from tests.support.upstream import Behaviour, MockUpstream

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
      - {{pattern: "^PROJECT_[A-Z]+$", name: codename, action: block}}
      - {{keywords: [password], name: pw, action: {pw_action}}}
"""
KEY = "AKIAIOSFODNN7EXAMPLE"
HI = [{"role": "user", "content": "hi"}]


class Login(BaseModel):
    username: str
    password: str


def tool(name: str, properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    parameters = {"type": "object", "properties": properties, "required": list(properties)}
    function = {"name": name, "description": description, "parameters": parameters}
    return {"type": "function", "function": function}


STRING = {"type": "string"}


@pytest.fixture(params=["redact"])
async def setup(request, tmp_path, monkeypatch):
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream-secret")
    async with MockUpstream("up") as up:
        policy = POLICY.format(base=up.base_url, pw_action=request.param)
        async with running_gateway(tmp_path, policy) as gw:
            yield gw, up, await gw.token()


async def post(http, gw, token, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with http.post(
        f"{gw.base_url}/chat/completions",
        json={"model": "gpt-4o-mini", **body},
        headers={"authorization": f"Bearer {token}"},
    ) as response:
        return response.status, orjson.loads(await response.read())


async def test_structured_output_with_a_redacted_field_name_is_refused_not_renamed(setup):
    """The SDK's parse() with a `password` field under a redact rule gets 400 naming the
    rule; the upstream never gets a schema with `[REDACTED:pw]` as a property."""
    gw, up, token = setup
    async with openai.AsyncOpenAI(base_url=gw.base_url, api_key=token, max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.beta.chat.completions.parse(
                model="gpt-4o-mini", messages=HI, response_format=Login
            )
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "content_policy_violation"
    assert "'pw'" in error["message"] and "password" not in error["message"]
    assert up.requests == []


@pytest.mark.parametrize(
    "body",
    [
        {"messages": HI, "tools": [tool("reset-password", {"user": STRING})]},
        {"messages": HI, "tools": [tool("f", {"password": STRING, "Password": STRING})]},
        {"messages": HI, "tool_choice": {"type": "function", "function": {"name": "password"}}},
        {"messages": HI, "guided_json": {"type": "object", "properties": {"password": STRING}}},
    ],
)
async def test_a_redact_rule_matching_a_name_refuses_the_request(setup, http, body):
    """A tool name, property names, a tool_choice name, an unknown field's key: renaming
    breaks them, so the request is refused, naming the rule."""
    gw, up, token = setup
    status, answer = await post(http, gw, token, body)
    assert status == 400, answer
    assert answer["error"]["code"] == "content_policy_violation"
    assert "'pw'" in answer["error"]["message"]
    assert up.requests == []


async def test_a_description_is_still_redacted_and_the_names_go_as_written(setup, http):
    """Free text in a schema (a description) is redacted; the tool keeps working."""
    gw, up, token = setup
    body = {"messages": HI, "tools": [tool("login", {"user": STRING}, "checks the password")]}
    status, answer = await post(http, gw, token, body)
    assert status == 200, answer
    function = up.requests[0].json["tools"][0]["function"]
    assert function["description"] == "checks the [REDACTED:pw]"
    assert function["name"] == "login" and list(function["parameters"]["properties"]) == ["user"]


@pytest.mark.parametrize("setup", ["flag"], indirect=True)
async def test_a_flag_rule_on_a_name_records_and_forwards_it_unchanged(setup):
    """Under a flag rule, parse() works: the upstream gets the schema as the SDK wrote it."""
    gw, up, token = setup
    up.behave(Behaviour(content='{"username": "u", "password": "p"}'))
    async with openai.AsyncOpenAI(base_url=gw.base_url, api_key=token, max_retries=0) as client:
        completion = await client.beta.chat.completions.parse(
            model="gpt-4o-mini", messages=HI, response_format=Login
        )
    assert completion.choices[0].message.parsed == Login(username="u", password="p")
    schema = up.requests[0].json["response_format"]["json_schema"]["schema"]
    assert list(schema["properties"]) == ["username", "password"]


@pytest.mark.parametrize(
    "body",
    [
        {"messages": HI, "tools": [tool("f", {"a": STRING, "PROJECT_ZEUS": STRING, "b": STRING})]},
        {"messages": HI, "tools": [tool("f", {"PROJECT_ZEUS": STRING, "b": STRING})]},
        {"messages": HI, "extra": {"PROJECT_ZEUS": 1, "b": 2}},
    ],
)
async def test_an_anchored_pattern_sees_each_name_alone(setup, http, body):
    """`^PROJECT_[A-Z]+$` blocks a property name among others, as it blocks a lone one."""
    gw, up, token = setup
    status, answer = await post(http, gw, token, body)
    assert status == 400, answer
    assert "'codename'" in answer["error"]["message"]
    assert up.requests == []


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "assistant", "content": "ok", "thinking": KEY}, *HI]},
        {
            "messages": [
                {
                    "role": "assistant",
                    "content": "ok",
                    "thinking_blocks": [{"type": "thinking", "thinking": KEY}],
                },
                *HI,
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "hi", "cache_control": {"note": KEY}},
                    ],
                }
            ]
        },
        {"messages": HI, "stream": True, "stream_options": {"include_usage": True, "x": KEY}},
        {"messages": HI, "tools": [{**tool("f", {}), "description": KEY}]},
    ],
)
async def test_unknown_keys_inside_messages_parts_tools_and_stream_options_are_scanned(
    setup, http, body
):
    """A key hidden under a key the gateway does not know, nested, is blocked as at the top."""
    gw, up, token = setup
    status, answer = await post(http, gw, token, body)
    assert status == 400, answer
    assert "'secrets'" in answer["error"]["message"]
    assert up.requests == []
