"""OpenAI-wire providers: Azure's deployment URLs and headers; usage when upstreams say none."""

import asyncio

import aiohttp
import httpx2 as httpx
import openai
import orjson
import pytest

from tests.support.gateway import running_gateway
from tests.support.upstream import MockUpstream

AZURE = """
providers:
  az: {{type: azure, api_base: "{origin}", api_key: "${{AZ_KEY}}", api_version: "2024-10-21"}}
models:
  gpt-4o:
    deployments: [{{provider: az, model: my-gpt4o-deployment}}]
  embed:
    deployments: [{{provider: az, model: my-embedding}}]
teams:
  demo: {{models: ["*"]}}
"""

PLAIN = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
  claude: {{type: anthropic, api_key: "${{ANTHROPIC_KEY}}"}}
models:
  m:
    deployments: [{{provider: up, model: upstream-model}}]
  claude:
    deployments: [{{provider: claude, model: claude-3-5-haiku}}]
teams:
  demo: {{models: ["*"]}}
"""


@pytest.fixture(autouse=True)
def anthropic_key(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_KEY", "test-key")


async def test_azure_uses_deployment_urls_api_version_and_api_key_header(tmp_path, monkeypatch):
    monkeypatch.setenv("AZ_KEY", "azure-secret")
    async with MockUpstream("azure", api_key="azure-secret") as up:
        async with running_gateway(tmp_path, AZURE.format(origin=up.origin)) as gw:
            client = await gw.openai()
            raw = await client.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
            )
            await client.embeddings.create(model="embed", input="x")
            stream = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert raw.headers["x-gateway-deployment"] == "az/my-gpt4o-deployment"
    chat, embed, streamed = up.requests
    assert chat.path == "/openai/deployments/my-gpt4o-deployment/chat/completions"
    assert chat.query == {"api-version": "2024-10-21"}
    assert chat.headers["api-key"] == "azure-secret"
    assert "authorization" not in chat.headers
    assert embed.path == "/openai/deployments/my-embedding/embeddings"
    assert streamed.json["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("version", ["2024-02-01", "2024-06-01", "2024-08-01-preview"])
async def test_an_azure_version_without_stream_options_streams_with_the_gateways_count(
    tmp_path, monkeypatch, version
):
    """Azure api-versions before 2024-09-01 refuse `stream_options` (probe p24): a stream
    goes without it (the caller's own too), and a caller that asked for usage gets the
    gateway's count in OpenAI's final usage chunk."""
    monkeypatch.setenv("AZ_KEY", "azure-secret")
    policy = AZURE.replace("2024-10-21", version)
    async with MockUpstream("azure", api_key="azure-secret") as up:
        up.behave("stream_no_usage", content="one two three")
        async with running_gateway(tmp_path, policy.format(origin=up.origin)) as gw:
            stream = await (await gw.openai()).chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": "count"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [c async for c in stream]
    (sent,) = up.requests
    assert sent.query == {"api-version": version}
    assert "stream_options" not in sent.json and sent.json["stream"] is True
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3


@pytest.mark.parametrize(
    ("version", "takes"),
    [
        ("2024-02-01", False),
        ("2024-08-01-preview", False),
        ("2024-09-01-preview", True),
        ("2024-10-21", True),
        ("2025-04-01-preview", True),
        ("v1", True),
        ("preview", True),
        (None, True),
    ],
)
def test_which_azure_versions_take_stream_options(version, takes):
    from gateway.providers.openai_compat import azure_takes_stream_options

    assert azure_takes_stream_options(version) is takes


def access_lines(tmp_path) -> list[dict]:
    """The gateway's access log (written to a file for these tests, flushed at shutdown)."""
    path = tmp_path / "access.log"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def logged(tmp_path, template: str, **values: str):
    return running_gateway(
        tmp_path, template.format(**values), access_log=str(tmp_path / "access.log")
    )


async def test_a_stream_without_upstream_usage_is_counted_and_marked_estimated(tmp_path):
    """An upstream that ignores stream_options (old vLLM): the gateway counts the usage,
    and the client that asked for it gets OpenAI's final usage chunk with that count."""
    async with MockUpstream("old-vllm") as up:
        up.behave("stream_no_usage", content="one two three four five six")
        async with logged(tmp_path, PLAIN, base=up.base_url) as gw:
            client = await gw.openai()
            stream = await client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "count to six"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [c async for c in stream]
    *content, last = chunks
    assert all(c.usage is None for c in content)
    assert "".join(c.choices[0].delta.content or "" for c in content) == (
        "one two three four five six"
    )
    assert last.choices == []
    assert last.usage is not None
    assert (last.id, last.model, last.created, last.object) == (
        content[0].id,
        content[0].model,
        content[0].created,
        "chat.completion.chunk",
    )
    (line,) = access_lines(tmp_path)
    assert line["usage_estimated"] is True
    assert line["output_tokens"] == last.usage.completion_tokens == 6
    assert line["input_tokens"] == last.usage.prompt_tokens > 3
    assert last.usage.total_tokens == 6 + last.usage.prompt_tokens


@pytest.mark.parametrize("endpoint", ["chat/completions", "completions"])
async def test_a_stream_without_upstream_usage_has_usage_null_on_its_other_chunks(
    tmp_path, endpoint
):
    """As OpenAI sends them when include_usage is set: `"usage": null` on every chunk but
    the final usage chunk, also when the upstream (old vLLM) sent no usage field at all."""
    async with MockUpstream("old-vllm") as up:
        up.behave("stream_no_usage", content="one two three")
        async with running_gateway(tmp_path, PLAIN.format(base=up.base_url)) as gw:
            body = {"model": "m", "stream": True, "stream_options": {"include_usage": True}}
            if endpoint == "completions":
                body["prompt"] = "count to three"
            else:
                body["messages"] = [{"role": "user", "content": "count to three"}]
            headers = {"Authorization": f"Bearer {await gw.token('demo')}"}
            async with httpx.AsyncClient(base_url=gw.origin, timeout=30) as http:
                reply = await http.post(f"/v1/{endpoint}", json=body, headers=headers)
    assert reply.status_code == 200
    payloads = [line[6:] for line in reply.text.split("\n\n") if line.startswith("data: ")]
    assert payloads[-1] == "[DONE]"
    *content, last = [orjson.loads(p) for p in payloads[:-1]]
    assert content and all("usage" in c and c["usage"] is None for c in content)
    assert all(c["choices"] for c in content)
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize("asks", [True, False])
async def test_a_completions_stream_without_upstream_usage_gets_one_only_if_asked(tmp_path, asks):
    """The same for legacy completions; a client that did not ask gets no usage chunk."""
    async with MockUpstream("old-vllm") as up:
        up.behave("stream_no_usage", content="one two three")
        async with logged(tmp_path, PLAIN, base=up.base_url) as gw:
            client = await gw.openai()
            options = {"stream_options": {"include_usage": True}} if asks else {}
            stream = await client.completions.create(
                model="m", prompt="count to three", stream=True, **options
            )
            chunks = [c async for c in stream]
    (line,) = access_lines(tmp_path)
    if asks:
        assert chunks[-1].choices == [] and chunks[-1].object == "text_completion"
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == line["output_tokens"] == 3
    else:
        assert all(c.usage is None and c.choices for c in chunks)


async def test_reported_stream_usage_is_recorded_as_reported(tmp_path):
    async with MockUpstream() as up:
        up.behave("ok", prompt_tokens=41, completion_tokens=7)
        async with logged(tmp_path, PLAIN, base=up.base_url) as gw:
            client = await gw.openai()
            stream = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}], stream=True
            )
            [c async for c in stream]
    (line,) = access_lines(tmp_path)
    assert (line["input_tokens"], line["output_tokens"], line["usage_estimated"]) == (41, 7, False)
    assert line["deployment"] == "up/upstream-model"
    assert line["ttfb_ms"] is not None


async def test_a_client_that_hangs_up_is_charged_for_what_was_generated(tmp_path):
    async with MockUpstream() as up:
        up.behave("ok", chunks=40, chunk_delay_s=0.05, content=" ".join(["word"] * 40))
        async with logged(tmp_path, PLAIN, base=up.base_url) as gw:
            token = await gw.token()
            async with aiohttp.ClientSession() as http:
                response = await http.post(
                    f"{gw.base_url}/chat/completions",
                    json={
                        "model": "m",
                        "stream": True,
                        "messages": [{"role": "user", "content": "x"}],
                    },
                    headers={"authorization": f"Bearer {token}"},
                )
                for _ in range(6):  # a role delta, then one word per event
                    await response.content.readuntil(b"\n\n")
                response.close()
            await up.wait_for_disconnects(1)
    (line,) = access_lines(tmp_path)
    assert line["outcome"] == "client_disconnected"
    assert line["usage_estimated"] is True
    assert 5 <= line["output_tokens"] < 40


async def test_responses_are_refused_for_providers_that_cannot_serve_them(tmp_path):
    async with MockUpstream() as up:
        async with running_gateway(tmp_path, PLAIN.format(base=up.base_url)) as gw:
            client = await gw.openai()
            with pytest.raises(openai.BadRequestError) as caught:
                await client.responses.create(model="claude", input="hi")
    assert caught.value.code == "unsupported_endpoint"
    assert "/v1/responses" in caught.value.message


async def test_a_responses_stream_ends_cleanly_without_done(tmp_path):
    """Responses streams have no [DONE]: closing after response.completed is their normal end."""
    async with MockUpstream() as up:
        up.behave("ok", prompt_tokens=12, completion_tokens=5)
        async with logged(tmp_path, PLAIN, base=up.base_url) as gw:
            client = await gw.openai()
            stream = await client.responses.create(model="m", input="hi", stream=True)
            events = [event async for event in stream]  # an error event would raise here
    assert events[-1].type == "response.completed"
    (line,) = access_lines(tmp_path)
    assert (line["outcome"], line["input_tokens"], line["output_tokens"]) == ("ok", 12, 5)
    assert line["usage_estimated"] is False


@pytest.mark.parametrize(
    ("create", "cut_after"),
    [
        ({"input": "hi"}, 5),  # created, in_progress, item added, part added, one delta
        ({"messages": [{"role": "user", "content": "hi"}]}, 3),  # three chunks, no [DONE]
    ],
    ids=["responses", "chat"],
)
async def test_a_stream_closed_before_its_final_event_ends_with_an_error_event(
    tmp_path, create, cut_after
):
    """A clean close that comes too early is a broken stream, counted and reported as one:
    on chat an error body (the SDK raises), on Responses OpenAI's `error` event (the SDK
    yields it as a ResponseErrorEvent, as from OpenAI itself)."""
    async with MockUpstream() as up:
        up.behave("stream_cut", fault_after=cut_after)
        async with logged(tmp_path, PLAIN, base=up.base_url) as gw:
            client = await gw.openai()
            received = []
            if "input" in create:
                stream = await client.responses.create(model="m", stream=True, **create)
                received = [event async for event in stream]
                error = received.pop()
                assert (error.type, error.code) == ("error", "upstream_unavailable")
                assert "failed mid-stream" in error.message
            else:
                stream = await client.chat.completions.create(model="m", stream=True, **create)
                with pytest.raises(openai.APIError) as caught:
                    async for event in stream:
                        received.append(event)
                assert "failed mid-stream" in caught.value.message
    assert len(received) == cut_after
    (line,) = access_lines(tmp_path)
    assert (line["outcome"], line["usage_estimated"]) == ("upstream_error", True)


async def test_concurrent_first_counts_neither_fail_nor_lose_their_log_line(tmp_path):
    """Right after start, many requests count tokens at once (no upstream usage): every one
    answers 200 and is logged with its usage (the encodings load once, under a lock)."""
    from gateway.limits import token_count as tokens

    async with MockUpstream() as up:
        up.behave("stream_no_usage")
        async with logged(tmp_path, PLAIN, base=up.base_url) as gw:
            client = await gw.openai()
            statuses = []
            for _ in range(3):
                tokens._LOADED.clear()  # as in a freshly started process
                results = await asyncio.gather(
                    *[
                        client.chat.completions.with_raw_response.create(
                            model="m", messages=[{"role": "user", "content": "hi"}]
                        )
                        for _ in range(48)
                    ],
                    return_exceptions=True,
                )
                statuses += [getattr(r, "status_code", repr(r)) for r in results]
    lines = access_lines(tmp_path)
    assert statuses == [200] * 144
    assert len(lines) == 144
    assert all(line["status"] == 200 and line["usage_estimated"] for line in lines)


KEYED = """
providers:
  up: {{type: openai-compatible, api_base: "{base}", api_key: "${{UP_KEY}}"}}
models:
  m:
    deployments: [{{provider: up, model: upstream-model}}]
    routing: {{retries: 0}}
teams:
  demo: {{models: ["*"]}}
"""


@pytest.mark.parametrize("status", [500, 401, 429])
async def test_a_key_echoed_by_a_failing_upstream_never_reaches_the_log(
    tmp_path, monkeypatch, caplog, status
):
    key = "prov-key-7f3a9c1e5b"  # not key-shaped: only knowing our own key can catch it
    monkeypatch.setenv("UP_KEY", key)
    async with MockUpstream() as up:
        up.behave(
            "status", status=status, body=f"bad request, you sent Bearer {key} and sk-other123456"
        )
        async with running_gateway(tmp_path, KEYED.format(base=up.base_url)) as gw:
            client = await gw.openai()
            with pytest.raises(openai.APIStatusError):
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}]
                )
    logged = [(r.getMessage(), repr(getattr(r, "fields", ""))) for r in caplog.records]
    assert any("upstream attempt failed" in message for message, _ in logged)
    assert not any(key in text or "sk-other" in text for pair in logged for text in pair)


async def test_a_masked_fragment_of_our_key_never_reaches_the_caller(tmp_path, monkeypatch):
    """OpenAI's "Incorrect API key provided: sk-secre****...-123" shows 12 characters of
    our key: the masked run is redacted whole in the message passed back."""
    monkeypatch.setenv("UP_KEY", "sk-secretkeyvalue-123")
    message = "Incorrect API key provided: sk-secre********************-123. See the docs."
    async with MockUpstream() as up:
        up.behave(
            "status",
            status=400,
            body={"error": {"message": message, "type": "invalid_request_error"}},
        )
        async with running_gateway(tmp_path, KEYED.format(base=up.base_url)) as gw:
            client = await gw.openai(max_retries=0)
            with pytest.raises(openai.BadRequestError) as caught:
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}]
                )
    assert caught.value.body["message"] == "Incorrect API key provided: [redacted]. See the docs."


async def test_a_whole_answer_without_upstream_usage_gets_the_gateways_count(tmp_path):
    """OpenAI always answers with `usage`; an upstream that sent none (old vLLM) gets the
    gateway's count put there, as it counted it (and as the ledger holds it)."""
    async with MockUpstream() as up:
        up.behave("stream_no_usage", content="one two three four")
        async with logged(tmp_path, PLAIN, base=up.base_url) as gw:
            client = await gw.openai()
            chat = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi there"}]
            )
            text = await client.completions.create(model="m", prompt="hi there")
            vectors = await client.embeddings.create(model="m", input=["hi there", "again"])
    assert all(request.json.get("stream") is not True for request in up.requests)
    lines = access_lines(tmp_path)
    assert [line["usage_estimated"] for line in lines] == [True, True, True]
    chat_line, text_line, vectors_line = lines
    for answer, line in ((chat, chat_line), (text, text_line)):
        assert answer.usage is not None
        assert answer.usage.prompt_tokens == line["input_tokens"] > 0
        assert answer.usage.completion_tokens == line["output_tokens"] == 4
        assert answer.usage.total_tokens == line["input_tokens"] + 4
    assert vectors.usage.prompt_tokens == vectors.usage.total_tokens == vectors_line["input_tokens"]
    assert vectors_line["input_tokens"] > 0
