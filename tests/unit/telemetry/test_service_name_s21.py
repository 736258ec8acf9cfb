"""service.name by OpenTelemetry's precedence (telemetry/attributes.py service_name)."""

from __future__ import annotations

import pytest

from gateway.telemetry.attributes import service_name


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({}, "llm-gateway"),
        ({"OTEL_SERVICE_NAME": "gw-prod"}, "gw-prod"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "team=ml, service.name = gw%20eu ,x=y"}, "gw eu"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=a", "OTEL_SERVICE_NAME": "b"}, "b"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=a", "OTEL_SERVICE_NAME": " "}, "a"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=,team=ml"}, "llm-gateway"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.namespace=ns"}, "llm-gateway"),
    ],
)
def test_otel_service_name_wins_then_resource_attributes_then_ours(env, name):
    assert service_name(env) == name
