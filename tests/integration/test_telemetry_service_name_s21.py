"""OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES' service.name name the exported spans'
service, by OpenTelemetry's precedence; the other resource attributes stay."""

from __future__ import annotations

import pytest

from tests.support.telemetry import traced_gateway
from tests.support.upstream import MockUpstream

POLICY = """
providers:
  a: {{type: openai-compatible, api_base: "{a}"}}
models:
  m:
    deployments: [{{provider: a, model: model-a}}]
teams:
  demo: {{models: ["*"]}}
"""


@pytest.mark.parametrize(
    ("service_env", "expected"),
    [
        ({"OTEL_SERVICE_NAME": "gw-prod"}, "gw-prod"),
        ({}, "gw-from-attributes"),
    ],
)
async def test_the_operators_service_name_is_on_every_span(
    tmp_path, monkeypatch, service_env, expected
):
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging,service.name=gw-from-attributes"
    )
    for key, value in service_env.items():
        monkeypatch.setenv(key, value)
    async with MockUpstream("a") as a:
        async with traced_gateway(tmp_path, POLICY.format(a=a.base_url)) as (gw, spans):
            client = await gw.openai()
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
    finished = spans.get_finished_spans()
    assert len(finished) == 2
    for span in finished:
        assert span.resource.attributes["service.name"] == expected
        assert span.resource.attributes["deployment.environment"] == "staging"


async def test_without_either_the_service_is_llm_gateway(tmp_path, monkeypatch):
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    async with MockUpstream("a") as a:
        async with traced_gateway(tmp_path, POLICY.format(a=a.base_url)) as (gw, spans):
            client = await gw.openai()
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
    for span in spans.get_finished_spans():
        assert span.resource.attributes["service.name"] == "llm-gateway"
