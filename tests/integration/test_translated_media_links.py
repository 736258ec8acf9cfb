"""Through the gateway: an Anthropic-type deployment asked about a linked image answers
400 `invalid_request_error` naming the field, and nothing fetches the link."""

from __future__ import annotations

import litellm
import openai
import pytest
from aiohttp import web

from tests.integration.providers.litellm_upstreams import API_KEY, LITELLM_WARNINGS, run_upstream
from tests.support.aiohttp_app import serving
from tests.support.gateway import running_gateway

pytestmark = LITELLM_WARNINGS

POLICY = """
providers:
  claude: {{type: anthropic, api_base: "{base}", api_key: "${{ANTHROPIC_TEST_KEY}}"}}
models:
  claude-haiku:
    deployments: [{{provider: claude, model: claude-3-5-haiku-20241022}}]
teams:
  demo: {{models: ["*"]}}
"""


async def test_a_linked_image_is_a_400_and_never_fetched(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", API_KEY)
    fetched: list[str] = []

    async def png(request: web.Request) -> web.Response:
        fetched.append(request.path)
        return web.Response(body=bytes.fromhex("89504e470d0a1a0a") + b"\0" * 64)

    app = web.Application()
    app.router.add_get("/{tail:.*}", png)
    async with serving(app) as images, run_upstream("anthropic") as upstream:
        # As litellm fetches any public host's image: this one stands for such a host.
        monkeypatch.setattr(litellm, "user_url_allowed_hosts", [images.removeprefix("http://")])
        async with running_gateway(tmp_path, POLICY.format(base=upstream.base_url)) as gw:
            client = await gw.openai()
            with pytest.raises(openai.BadRequestError) as refused:
                await client.chat.completions.create(
                    model="claude-haiku",
                    max_tokens=20,
                    messages=[{"role": "user", "content": [
                        {"type": "text", "text": "What is in it?"},
                        {"type": "image_url", "image_url": {"url": f"{images}/x.png"}},
                    ]}],
                )  # fmt: skip
    error = refused.value.body
    assert isinstance(error, dict)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages[0].content[1].image_url.url"
    assert "data: URL" in error["message"]
    assert fetched == [] and upstream.seen == []


BOTH = """
providers:
  claude: {{type: anthropic, api_base: "{anthropic}", api_key: "${{ANTHROPIC_TEST_KEY}}"}}
  gem: {{type: gemini, api_base: "{gemini}", api_key: "${{ANTHROPIC_TEST_KEY}}"}}
models:
  claude-haiku:
    deployments: [{{provider: claude, model: claude-3-5-haiku-20241022}}]
  gemini-flash:
    deployments: [{{provider: gem, model: gemini-2.5-flash}}]
teams:
  demo: {{models: ["*"]}}
"""


@pytest.mark.parametrize("model", ["claude-haiku", "gemini-flash"])
@pytest.mark.parametrize(
    "url", ["http:/127.0.0.1:9/x.png", "//127.0.0.1:9/x.png", "127.0.0.1:9/x.png"]
)
async def test_a_link_without_a_scheme_is_the_callers_400(tmp_path, monkeypatch, model, url):
    """A link-like image value is a 400 naming the field, never a 502 after retries nor
    litellm's message quoting the conversation back."""
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", API_KEY)
    async with run_upstream("anthropic") as claude, run_upstream("gemini") as gem:
        policy = BOTH.format(anthropic=claude.base_url, gemini=gem.base_url)
        async with running_gateway(tmp_path, policy) as gw:
            client = await gw.openai(max_retries=0)
            with pytest.raises(openai.BadRequestError) as refused:
                await client.chat.completions.create(
                    model=model,
                    max_tokens=20,
                    messages=[{"role": "user", "content": [
                        {"type": "text", "text": "my secret plan"},
                        {"type": "image_url", "image_url": {"url": url}},
                    ]}],
                )  # fmt: skip
        assert claude.seen == [] and gem.seen == []
    error = refused.value.body
    assert isinstance(error, dict)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages[0].content[1].image_url.url"
    assert "secret plan" not in error["message"]
