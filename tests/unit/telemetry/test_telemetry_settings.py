"""GATEWAY_OTLP_ENDPOINT and GATEWAY_METRICS as an operator sets them."""

from __future__ import annotations

import pytest

from gateway.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("http://collector:4318", "http://collector:4318"),
        (" https://otel.example/v1/traces ", "https://otel.example/v1/traces"),
    ],
)
def test_otlp_endpoint_unset_or_empty_turns_tracing_off(value, expected):
    env = {} if value is None else {"GATEWAY_OTLP_ENDPOINT": value}
    assert load_settings(env).otlp_endpoint == expected


@pytest.mark.parametrize(
    "value",
    [
        "collector:4318",
        "grpc://collector:4317",
        "http://",
        "x",
        "http://collector:43x8",  # was a traceback at start-up, exit 3
        "http://collector:99999",
        "http://collector:0",
        "http://user:pw@collector:-1",
    ],
)
def test_a_bad_otlp_endpoint_is_refused_by_name(value):
    with pytest.raises(SettingsError, match="GATEWAY_OTLP_ENDPOINT must be an http"):
        load_settings({"GATEWAY_OTLP_ENDPOINT": value})


@pytest.mark.parametrize(
    ("value", "enabled"),
    [(None, True), ("on", True), ("true", True), ("1", True), ("off", False), ("false", False),
     ("0", False)],
)  # fmt: skip
def test_metrics_setting(value, enabled):
    env = {} if value is None else {"GATEWAY_METRICS": value}
    assert load_settings(env).metrics_enabled is enabled


@pytest.mark.parametrize(
    ("value", "ratio"), [(None, 1.0), ("", 1.0), ("0", 0.0), ("0.25", 0.25), ("1", 1.0)]
)
def test_trace_sample_ratio(value, ratio):
    env = {} if value is None else {"GATEWAY_TRACE_SAMPLE_RATIO": value}
    assert load_settings(env).trace_sample_ratio == ratio


@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan", "half", "inf"])
def test_a_bad_trace_sample_ratio_is_refused_by_name(value):
    with pytest.raises(
        SettingsError, match="GATEWAY_TRACE_SAMPLE_RATIO must be a number from 0 to 1"
    ):
        load_settings({"GATEWAY_TRACE_SAMPLE_RATIO": value})
