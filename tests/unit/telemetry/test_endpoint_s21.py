"""The collector's credentials: userinfo, OTEL_EXPORTER_OTLP_*HEADERS, and what is shown."""

from __future__ import annotations

import pytest

from gateway.settings import SettingsError, load_settings
from gateway.telemetry.endpoint import (
    basic_auth,
    configured_headers,
    parse_headers,
    request_headers,
    shown_url,
    without_userinfo,
)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:pw@collector:4318/v1/traces", "http://collector:4318/v1/traces"),
        ("http://u:p@ss@collector:4318", "http://collector:4318"),  # an '@' left unencoded
        ("https://token@otel.example", "https://otel.example"),
        ("http://collector:4318/v1/traces?a=b@c", "http://collector:4318/v1/traces?a=b@c"),
    ],
)
def test_shown_url_drops_the_userinfo_only(url, shown):
    assert shown_url(url) == shown
    assert without_userinfo(url) == shown


def test_userinfo_is_basic_auth_percent_decoded():
    assert basic_auth("http://collector:4318") is None
    assert basic_auth("http://otlpuser:s3cretPW@h") == "Basic b3RscHVzZXI6czNjcmV0UFc="
    assert basic_auth("http://a%40b:p%3Aw@h") == "Basic YUBiOnA6dw=="  # a@b:p:w


def test_headers_are_baggage_style_pairs_percent_decoded():
    raw = " Authorization=Bearer%20abc , x-honeycomb-team=k1,,empty="
    assert parse_headers(raw, "V") == {
        "authorization": "Bearer abc",
        "x-honeycomb-team": "k1",
        "empty": "",
    }


def test_the_traces_variable_wins_per_name():
    env = {
        "OTEL_EXPORTER_OTLP_HEADERS": "a=1,b=2",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "b=3,c=4",
    }
    assert dict(configured_headers(env)) == {"a": "1", "b": "3", "c": "4"}


def test_configured_headers_replace_the_userinfos_but_not_the_content_type():
    found = request_headers(
        "http://u:p@h", (("authorization", "Bearer x"), ("content-type", "text/plain")), "ct"
    )
    assert found == {"authorization": "Bearer x", "content-type": "ct"}
    assert request_headers("http://u:p@h", (), "ct")["authorization"].startswith("Basic ")


@pytest.mark.parametrize("raw", ["novalue", "bad name=x", "=x", "a=b%0D%0AInjected: y"])
def test_a_pair_that_is_no_header_is_refused_at_start_without_its_value(raw):
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_TRACES_HEADERS") as error:
        load_settings({"OTEL_EXPORTER_OTLP_TRACES_HEADERS": raw})
    assert "Injected" not in str(error.value) and "novalue" not in str(error.value)


def test_a_bad_endpoint_is_refused_without_its_password():
    with pytest.raises(SettingsError) as error:
        load_settings({"GATEWAY_OTLP_ENDPOINT": "ftp://user:s3cretPW@collector"})
    assert "s3cretPW" not in str(error.value)


def test_settings_repr_holds_no_header_value():
    settings = load_settings({"OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20abc"})
    assert settings.otlp_headers == (("authorization", "Bearer abc"),)
    assert "Bearer abc" not in repr(settings)
