"""Export to a real OTLP/HTTP receiver on 127.0.0.1: the gateway's spans arrive as
protobuf, decoded with opentelemetry-proto, with parent and child spans and the
`traceparent` round trip through a mock upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.support.gateway import running_gateway
from tests.support.upstream import MockUpstream

POLICY = """
providers:
  a: {{type: openai-compatible, api_base: "{a}"}}
  b: {{type: openai-compatible, api_base: "{b}"}}
models:
  m:
    deployments:
      - {{provider: a, model: model-a}}
      - {{provider: b, model: model-b, priority: 2}}
    routing: {{retries: 1, attempt_timeout_s: 5, timeout_s: 10}}
teams:
  demo: {{models: ["*"]}}
"""
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


class Receiver:
    """An OTLP/HTTP traces endpoint that keeps what it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.resources: list[dict[str, str]] = []
        self.content_types: list[str] = []

    async def export(self, request: web.Request) -> web.Response:
        self.content_types.append(request.content_type)
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        for resource_spans in message.resource_spans:
            self.resources.append(
                {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            )
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )


@asynccontextmanager
async def otlp_receiver() -> AsyncIterator[tuple[str, Receiver]]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/v1/traces", receiver.export)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", receiver
    finally:
        await runner.cleanup()


def attributes(span: Span) -> dict[str, object]:
    found: dict[str, object] = {}
    for a in span.attributes:
        kind = a.value.WhichOneof("value")
        found[a.key] = getattr(a.value, kind)
    return found


async def test_spans_reach_an_otlp_http_collector_with_parents_and_traceparent(tmp_path):
    """A failed-over request sent with a caller's traceparent arrives at the collector as
    one server span (child of the caller's) and two client spans under it; the upstream
    that answered received the traceparent of its own attempt's span."""
    async with (
        otlp_receiver() as (endpoint, receiver),
        MockUpstream("a") as a,
        MockUpstream("b") as b,
    ):
        a.behave("status", status=500)
        policy = POLICY.format(a=a.base_url, b=b.base_url)
        async with running_gateway(tmp_path, policy, otlp_endpoint=endpoint) as gw:
            client = await gw.openai()
            await client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": "hi"}],
                extra_headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
            )
        # Leaving the gateway shut it down, which flushed the batch processor.
        for _ in range(50):
            if len(receiver.spans) >= 3:
                break
            await asyncio.sleep(0.1)
    assert receiver.content_types == ["application/x-protobuf"]
    assert receiver.resources[0]["service.name"] == "llm-gateway"
    server = [s for s in receiver.spans if s.kind == Span.SPAN_KIND_SERVER]
    client_spans = sorted(
        (s for s in receiver.spans if s.kind == Span.SPAN_KIND_CLIENT),
        key=lambda s: s.start_time_unix_nano,
    )
    assert len(server) == 1 and len(client_spans) == 2
    (root,) = server
    assert root.trace_id.hex() == CALLER_TRACE
    assert root.parent_span_id.hex() == CALLER_SPAN
    assert attributes(root)["gateway.team"] == "demo"
    assert attributes(root)["gateway.attempts"] == 2
    for span in client_spans:
        assert span.trace_id.hex() == CALLER_TRACE
        assert span.parent_span_id == root.span_id
    failed, answered = client_spans
    assert attributes(failed)["error.type"] == "500"
    assert attributes(failed)["gateway.deployment"] == "a/model-a"
    assert attributes(answered)["gateway.deployment"] == "b/model-b"
    assert attributes(answered)["gen_ai.usage.output_tokens"] == 4
    # Each upstream got the traceparent of the span of its own attempt.
    assert a.requests[0].headers["traceparent"] == f"00-{CALLER_TRACE}-{failed.span_id.hex()}-01"
    assert b.requests[0].headers["traceparent"] == f"00-{CALLER_TRACE}-{answered.span_id.hex()}-01"


async def test_a_collector_that_is_down_costs_no_request_and_is_logged_once(tmp_path, caplog):
    """Spans that cannot be delivered are dropped; requests are served as usual and the
    failure is logged when it starts, not once per batch."""
    from tests.support.processes import free_port

    async with MockUpstream("a") as a, MockUpstream("b") as b:
        policy = POLICY.format(a=a.base_url, b=b.base_url)
        endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        async with running_gateway(tmp_path, policy, otlp_endpoint=endpoint) as gw:
            client = await gw.openai()
            tracing = gw.services.telemetry.tracing
            assert tracing is not None
            for _ in range(3):  # three batches, each refused
                reply = await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}]
                )
                assert reply.choices[0].message.content == "mock reply from a"
                await asyncio.to_thread(tracing.flush)
    failures = [r for r in caplog.records if r.getMessage().startswith("trace export failed")]
    assert len(failures) == 1


async def test_client_spans_name_the_upstream_server_and_the_mock_none(tmp_path):
    """Each attempt's client span carries the host and port of its provider's api_base
    (`server.address`, `server.port`); an attempt on the mock provider carries neither."""
    async with otlp_receiver() as (endpoint, receiver), MockUpstream("a") as a:
        a.behave("status", status=503)
        policy = f"""
providers:
  a: {{type: openai-compatible, api_base: "{a.base_url}"}}
  fake: {{type: mock}}
models:
  m:
    deployments:
      - {{provider: a, model: model-a}}
      - {{provider: fake, model: model-f, priority: 2}}
    routing: {{retries: 1, attempt_timeout_s: 5, timeout_s: 10}}
teams:
  demo: {{models: ["*"]}}
"""
        async with running_gateway(tmp_path, policy, otlp_endpoint=endpoint) as gw:
            client = await gw.openai()
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
        for _ in range(50):
            if len(receiver.spans) >= 3:
                break
            await asyncio.sleep(0.1)
    on_a, on_mock = sorted(
        (s for s in receiver.spans if s.kind == Span.SPAN_KIND_CLIENT),
        key=lambda s: s.start_time_unix_nano,
    )
    assert attributes(on_a)["gateway.deployment"] == "a/model-a"
    assert attributes(on_a)["server.address"] == "127.0.0.1"
    assert attributes(on_a)["server.port"] == int(a.base_url.split(":")[2].split("/")[0])
    assert attributes(on_mock)["gateway.deployment"] == "fake/model-f"
    assert "server.address" not in attributes(on_mock)
    assert "server.port" not in attributes(on_mock)
    (server,) = [s for s in receiver.spans if s.kind == Span.SPAN_KIND_SERVER]
    assert "server.address" not in attributes(server)  # the gateway's own span: not upstream
