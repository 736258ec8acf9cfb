"""A chat request whose image or file is a link is refused before litellm sees it: litellm
would fetch the link from the gateway (any public host, blocking the event loop), so a
caller could make the gateway fetch what it names. Inline data goes through."""

from __future__ import annotations

from collections.abc import AsyncIterator

import litellm
import pytest
from aiohttp import web

from gateway.providers.base import UpstreamCall, UpstreamClientError
from tests.integration.providers.litellm_upstreams import (
    LITELLM_WARNINGS,
    Deployment,
    upstream_call,
)
from tests.support.aiohttp_app import serving

pytestmark = LITELLM_WARNINGS

MODELS = {
    "anthropic": "claude-3-5-sonnet-20241022",
    "gemini": "gemini-2.5-flash",
    "bedrock": "anthropic.claude-3-haiku-20240307-v1:0",
}
# A 1x1 PNG.
PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


@pytest.fixture(params=sorted(MODELS))
def deployment(request: pytest.FixtureRequest) -> tuple[Deployment, str]:
    return request.getfixturevalue(request.param), MODELS[request.param]


@pytest.fixture
async def image_host(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, list[str]]]:
    """A host serving a PNG, which litellm would fetch (as it fetches any public host's)."""
    fetched: list[str] = []

    async def png(request: web.Request) -> web.Response:
        fetched.append(request.path)
        return web.Response(body=bytes.fromhex("89504e470d0a1a0a") + b"\0" * 64)

    app = web.Application()
    app.router.add_get("/{tail:.*}", png)
    async with serving(app) as origin:
        monkeypatch.setattr(litellm, "user_url_allowed_hosts", [origin.removeprefix("http://")])
        yield origin, fetched


def _chat(model: str, part: dict[str, object], *, is_stream: bool = False) -> UpstreamCall:
    content = [{"type": "text", "text": "What is in it?"}, part]
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 20}
    return upstream_call("chat", model, body, is_stream=is_stream)


@pytest.mark.parametrize("is_stream", [False, True], ids=["send", "stream"])
async def test_a_linked_image_is_refused_and_never_fetched(
    deployment: tuple[Deployment, str], image_host: tuple[str, list[str]], is_stream: bool
) -> None:
    found, model = deployment
    upstream, provider = found.upstream, found.provider
    origin, fetched = image_host
    call = _chat(model, {"type": "image_url", "image_url": {"url": f"{origin}/cat.png"}})
    with pytest.raises(UpstreamClientError) as refused:
        if is_stream:
            await provider.open_stream(call)
        else:
            await provider.send(call)
    assert (refused.value.status, refused.value.type) == (400, "invalid_request_error")
    assert refused.value.param == "messages[0].content[1].image_url.url"
    assert "data: URL" in refused.value.message
    assert fetched == [] and upstream.seen == []


async def test_a_linked_file_is_refused_and_never_fetched(
    deployment: tuple[Deployment, str], image_host: tuple[str, list[str]]
) -> None:
    found, model = deployment
    upstream, provider = found.upstream, found.provider
    origin, fetched = image_host
    call = _chat(model, {"type": "file", "file": {"file_id": f"{origin}/report.pdf"}})
    with pytest.raises(UpstreamClientError) as refused:
        await provider.send(call)
    assert refused.value.param == "messages[0].content[1].file.file_id"
    assert fetched == [] and upstream.seen == []


async def test_an_inline_image_reaches_the_upstream(deployment: tuple[Deployment, str]) -> None:
    found, model = deployment
    upstream, provider = found.upstream, found.provider
    url = f"data:image/png;base64,{PNG_BASE64}"
    await provider.send(_chat(model, {"type": "image_url", "image_url": {"url": url}}))
    assert PNG_BASE64 in str(upstream.last.body)


# Values litellm may read as a link (its own guess), though they hold no `://`.
LINK_LIKE = ["http:/{host}/x.png", "http:{host}/x.png", "//{host}/x.png",
             "http:\\\\{host}\\x.png", "http%3A%2F%2F{host}%2Fx.png", "{host}/x.png"]  # fmt: skip


@pytest.mark.parametrize("form", LINK_LIKE)
async def test_a_link_like_value_is_refused_and_never_fetched(
    deployment: tuple[Deployment, str], image_host: tuple[str, list[str]], form: str
) -> None:
    """Only inline data passes: a link without `://` is the caller's 400 naming the field,
    not litellm's guess (a failed attempt, or a 400 quoting the conversation)."""
    found, model = deployment
    origin, fetched = image_host
    url = form.format(host=origin.removeprefix("http://"))
    call = _chat(model, {"type": "image_url", "image_url": {"url": url}})
    with pytest.raises(UpstreamClientError) as refused:
        await found.provider.send(call)
    assert (refused.value.status, refused.value.type) == (400, "invalid_request_error")
    assert refused.value.param == "messages[0].content[1].image_url.url"
    assert fetched == [] and found.upstream.seen == []


async def test_a_bedrock_document_link_is_refused(
    bedrock: Deployment, image_host: tuple[str, list[str]]
) -> None:
    origin, fetched = image_host
    part = {"type": "document", "document": {"url": origin.removeprefix("http:") + "/a.pdf"}}
    with pytest.raises(UpstreamClientError) as refused:
        await bedrock.provider.send(_chat(MODELS["bedrock"], part))
    assert refused.value.param == "messages[0].content[1].document.url"
    assert fetched == [] and bedrock.upstream.seen == []


async def test_inline_data_litellm_cannot_convert_is_the_callers_400(bedrock: Deployment) -> None:
    """A data URL of a type Bedrock takes no image of: litellm's conversion error (which it
    raises as a connection error) is the caller's 400, not a failed attempt to fail over."""
    part = {"type": "image_url", "image_url": {"url": "data:foo/bar;base64,AAAA"}}
    with pytest.raises(UpstreamClientError) as refused:
        await bedrock.provider.send(_chat(MODELS["bedrock"], part))
    assert (refused.value.status, refused.value.type) == (400, "invalid_request_error")
    assert "Unsupported image format" in refused.value.message
    assert "litellm" not in refused.value.message.lower()
    assert bedrock.upstream.seen == []
