"""A translated provider behind the gateway, end to end, with the openai SDK as the client."""

from tests.integration.providers.litellm_upstreams import API_KEY, LITELLM_WARNINGS, run_upstream
from tests.support.gateway import running_gateway

POLICY = """
providers:
  claude: {{type: anthropic, api_base: "{base}", api_key: "${{ANTHROPIC_TEST_KEY}}"}}
models:
  claude-haiku:
    deployments: [{{provider: claude, model: claude-3-5-haiku-20241022}}]
teams:
  demo: {{models: ["*"]}}
"""

pytestmark = LITELLM_WARNINGS


async def test_anthropic_through_the_gateway_stream_and_not(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", API_KEY)
    async with run_upstream("anthropic") as upstream:
        async with running_gateway(tmp_path, POLICY.format(base=upstream.base_url)) as gw:
            client = await gw.openai()
            raw = await client.chat.completions.with_raw_response.create(
                model="claude-haiku", messages=[{"role": "user", "content": "hi"}], max_tokens=20
            )
            reply = raw.parse()
            stream = await client.chat.completions.create(
                model="claude-haiku",
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=20,
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [c async for c in stream]
    assert raw.headers["x-gateway-deployment"] == "claude/claude-3-5-haiku-20241022"
    assert reply.choices[0].message.content
    assert reply.usage.prompt_tokens > 0
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
