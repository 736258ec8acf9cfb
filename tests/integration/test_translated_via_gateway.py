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


SONNET = """
providers:
  claude: {{type: anthropic, api_base: "{base}", api_key: "${{ANTHROPIC_TEST_KEY}}"}}
models:
  sonnet:
    deployments: [{{provider: claude, model: claude-sonnet-4-5}}]
teams:
  demo: {{models: ["*"]}}
"""


async def test_a_reasoning_effort_with_no_cap_gets_a_cap_above_its_thinking_budget(
    tmp_path, monkeypatch
):
    """No max_tokens from the caller: the cap the gateway sends Anthropic is above the
    thinking budget litellm maps the effort to (Anthropic refuses one at or under it:
    probe p24, where `high` was always a 400); no effort, the usual 4096."""
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", API_KEY)
    async with run_upstream("anthropic") as upstream:
        async with running_gateway(tmp_path, SONNET.format(base=upstream.base_url)) as gw:
            client = await gw.openai()
            sent = {}
            for effort in ("low", "high", "max", None):
                extra = {} if effort is None else {"reasoning_effort": effort}
                await client.chat.completions.create(
                    model="sonnet", messages=[{"role": "user", "content": "hi"}], **extra
                )
                sent[effort] = upstream.last.body
    assert sent[None]["max_tokens"] == 4096 and "thinking" not in sent[None]
    for effort in ("low", "high", "max"):
        budget = sent[effort]["thinking"]["budget_tokens"]
        assert sent[effort]["max_tokens"] == 4096 + budget, (effort, sent[effort])
