"""A collector that needs credentials: the endpoint's userinfo goes as HTTP Basic auth,
OTEL_EXPORTER_OTLP_HEADERS / _TRACES_HEADERS as headers, and no log line shows either."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from gateway.settings import load_settings
from tests.support.gateway import running_gateway
from tests.support.processes import free_port
from tests.support.upstream import MockUpstream

POLICY = """
providers:
  a: {{type: openai-compatible, api_base: "{a}"}}
models:
  m:
    deployments:
      - {{provider: a, model: model-a}}
teams:
  demo: {{models: ["*"]}}
"""
PASSWORD = "s3cretPW"


async def accept(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=b"", content_type="application/x-protobuf")


@asynccontextmanager
async def header_receiver() -> AsyncIterator[tuple[int, list[dict[str, str]]]]:
    """An OTLP/HTTP traces endpoint that keeps each export's headers."""
    seen: list[dict[str, str]] = []

    async def export(request: web.Request) -> web.Response:
        await request.read()
        seen.append({k.lower(): v for k, v in request.headers.items()})
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", export)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1], seen
    finally:
        await runner.cleanup()


async def test_userinfo_and_otel_header_variables_reach_the_collector(tmp_path):
    env = {
        "GATEWAY_OTLP_ENDPOINT": "",  # set below, once the port is known
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20abc,x-honeycomb-team=k1",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-honeycomb-team=k2, x-extra = a%2Cb",
    }
    async with header_receiver() as (port, seen), MockUpstream("a") as a:
        env["GATEWAY_OTLP_ENDPOINT"] = f"http://otlpuser:{PASSWORD}@127.0.0.1:{port}"
        settings = load_settings(env)
        async with running_gateway(
            tmp_path,
            POLICY.format(a=a.base_url),
            otlp_endpoint=settings.otlp_endpoint,
            otlp_headers=settings.otlp_headers,
        ) as gw:
            client = await gw.openai()
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
            tracing = gw.services.telemetry.tracing
            assert tracing is not None
            await asyncio.to_thread(tracing.flush)
    assert seen, "the collector got no export"
    headers = seen[0]
    # The configured authorization replaces the userinfo's; the traces variable wins per name.
    assert headers["authorization"] == "Bearer abc"
    assert headers["x-honeycomb-team"] == "k2"
    assert headers["x-extra"] == "a,b"
    assert headers["content-type"] == "application/x-protobuf"


async def test_the_endpoints_userinfo_is_sent_as_basic_auth(tmp_path):
    async with header_receiver() as (port, seen), MockUpstream("a") as a:
        endpoint = f"http://otlpuser:{PASSWORD}@127.0.0.1:{port}"
        async with running_gateway(
            tmp_path, POLICY.format(a=a.base_url), otlp_endpoint=endpoint
        ) as gw:
            client = await gw.openai()
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
            tracing = gw.services.telemetry.tracing
            assert tracing is not None
            await asyncio.to_thread(tracing.flush)
    assert seen, "the collector got no export"
    expected = base64.b64encode(f"otlpuser:{PASSWORD}".encode()).decode()
    assert seen[0]["authorization"] == f"Basic {expected}"


async def test_a_password_in_the_endpoint_is_never_logged(tmp_path, caplog):
    """The export fails (nothing listens), then works (a collector comes up): neither
    log line holds the password or the user."""
    port = free_port()
    endpoint = f"http://otlpuser:{PASSWORD}@127.0.0.1:{port}"
    async with MockUpstream("a") as a:
        async with running_gateway(
            tmp_path, POLICY.format(a=a.base_url), otlp_endpoint=endpoint
        ) as gw:
            client = await gw.openai()
            tracing = gw.services.telemetry.tracing
            assert tracing is not None
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
            await asyncio.to_thread(tracing.flush)
            app = web.Application()
            app.router.add_post("/v1/traces", accept)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            try:
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}]
                )
                await asyncio.to_thread(tracing.flush)
            finally:
                await runner.cleanup()
    lines = [r for r in caplog.records if r.name == "gateway.telemetry"]
    messages = [r.getMessage() for r in lines]
    assert any(m.startswith("trace export failed") for m in messages)
    assert any(m.startswith("trace export works again") for m in messages)
    for record in lines:
        shown = repr(record.__dict__)
        assert PASSWORD not in shown and "otlpuser" not in shown
    failed = next(r for r in lines if r.getMessage().startswith("trace export failed"))
    assert failed.fields["url"] == f"http://127.0.0.1:{port}/v1/traces"  # type: ignore[attr-defined]
