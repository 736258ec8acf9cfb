"""Settings: the issuer follows --host/--port unless set; new settings are checked at start."""

from __future__ import annotations

import pytest

from gateway.settings import SettingsError, default_issuer_url, is_derived_issuer, load_settings


@pytest.mark.parametrize(
    ("host", "port", "issuer"),
    [
        ("127.0.0.1", 8080, "http://localhost:8080"),
        ("127.0.0.1", 9001, "http://localhost:9001"),
        ("0.0.0.0", 80, "http://localhost:80"),
        ("::", 8080, "http://localhost:8080"),
        ("gw.internal", 8443, "http://gw.internal:8443"),
        ("10.0.0.5", 8080, "http://10.0.0.5:8080"),
        ("fd00::5", 8080, "http://[fd00::5]:8080"),
    ],
)
def test_default_issuer_url(host: str, port: int, issuer: str) -> None:
    assert default_issuer_url(host, port) == issuer


def test_the_issuer_follows_the_port_flag_unless_set_explicitly() -> None:
    assert load_settings({}).issuer_url == "http://localhost:8080"
    assert load_settings({"GATEWAY_PORT": "9100"}).issuer_url == "http://localhost:9100"
    assert load_settings({}).with_overrides(port=9200).issuer_url == "http://localhost:9200"
    explicit = load_settings({"GATEWAY_ISSUER_URL": "https://gw.example.com"})
    assert explicit.issuer_url_is_explicit
    assert explicit.with_overrides(port=9200).issuer_url == "https://gw.example.com"


def test_token_leeway_setting() -> None:
    assert load_settings({}).token_leeway_s == 30
    assert load_settings({"GATEWAY_TOKEN_LEEWAY_S": "0"}).token_leeway_s == 0
    assert load_settings({"GATEWAY_TOKEN_LEEWAY_S": "120"}).token_leeway_s == 120


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"GATEWAY_TOKEN_LEEWAY_S": "-1"}, "GATEWAY_TOKEN_LEEWAY_S must be from 0 to 300"),
        ({"GATEWAY_TOKEN_LEEWAY_S": "301"}, "GATEWAY_TOKEN_LEEWAY_S must be from 0 to 300"),
        ({"GATEWAY_TOKEN_LEEWAY_S": "1.5"}, "GATEWAY_TOKEN_LEEWAY_S must be a whole number"),
        ({"GATEWAY_SECRET_ENV_ALLOW": "A KEY"}, "GATEWAY_SECRET_ENV_ALLOW: 'A KEY'"),
        ({"GATEWAY_SECRET_FILE_DIRS": "secrets"}, "GATEWAY_SECRET_FILE_DIRS: 'secrets'"),
        ({"GATEWAY_UPSTREAM_ALLOW": "http://x"}, "GATEWAY_UPSTREAM_ALLOW: 'http://x'"),
        ({"GATEWAY_ISSUER_URL": "gw.example.com"}, "GATEWAY_ISSUER_URL must be an http(s) URL"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert str(caught.value).startswith(named)


def test_exposure_settings_accept_good_values_and_empty_lists() -> None:
    load_settings(
        {
            "GATEWAY_SECRET_ENV_ALLOW": "",
            "GATEWAY_SECRET_FILE_DIRS": "",
            "GATEWAY_UPSTREAM_ALLOW": "api.openai.com, *.corp, 10.0.0.0/8, ::1",
        }
    )


@pytest.mark.parametrize(
    ("issuer", "host", "expected"),
    [
        ("http://localhost:8080", "127.0.0.1", True),
        ("http://localhost:9123", "0.0.0.0", True),
        ("http://localhost:65535", "::", True),
        ("http://gw.internal:81", "gw.internal", True),
        ("http://localhost:0", "127.0.0.1", False),
        ("http://localhost:65536", "127.0.0.1", False),
        ("http://localhost:80x", "127.0.0.1", False),
        ("http://localhost:", "127.0.0.1", False),
        ("https://localhost:8080", "127.0.0.1", False),
        ("http://127.0.0.1:8080", "127.0.0.1", False),  # a loopback IdP's issuer, not ours
        ("http://localhost:8080/", "127.0.0.1", False),
        ("http://evil.example:8080", "gw.internal", False),
        # The caller's own text: digits beyond ASCII, or more than int() reads, are not ours.
        ("http://localhost:\u00b2", "127.0.0.1", False),  # superscript two
        ("http://localhost:\u2460", "127.0.0.1", False),  # circled one
        ("http://localhost:\u0668\u0660", "127.0.0.1", False),  # Arabic-Indic 80
        ("http://localhost:\uff18\uff10", "127.0.0.1", False),  # fullwidth 80
        ("http://localhost:" + "1" * 5000, "127.0.0.1", False),
        ("http://localhost:080800", "127.0.0.1", False),
    ],
)
def test_derived_issuers_are_the_default_url_on_any_port(
    issuer: str, host: str, expected: bool
) -> None:
    assert is_derived_issuer(issuer, host) is expected


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://127.0.0.1:6379/13abc", "'/13abc' is not a database number"),
        ("redis://127.0.0.1:6379/abc", "'/abc' is not a database number"),
        ("redis://127.0.0.1:6379/1x", "'/1x' is not a database number"),
        ("redis://127.0.0.1:6379/1/2", "'/1/2' is not a database number"),
        ("redis://127.0.0.1:6379/-1", "'/-1' is not a database number"),
        ("redis://127.0.0.1:6379/\u00b2", "is not a database number"),  # superscript two
        ("redis://127.0.0.1:6379/" + "1" * 5000, "is not a database number"),
        ("redis://127.0.0.1:6379/2147483648", "is not a database number"),
        ("redis://127.0.0.1:6379/0?db=1_0", "?db='1_0' is not a database number"),
        ("redis://127.0.0.1:6379?db=-1", "?db='-1' is not a database number"),
        ("redis://127.0.0.1:6379?db=", "?db='' is not a database number"),
        ("redis://127.0.0.1:6379?db=1&db=2", "?db= is given twice"),
        ("redis://127.0.0.1:6379/1?db=2", "the path says database 1 and ?db= says 2"),
        ("unix:///run/redis.sock?db=-1", "?db='-1' is not a database number"),
    ],
)
def test_a_redis_database_redis_py_would_not_select_is_refused(url: str, says: str) -> None:
    """redis-py drops a path it cannot read as a number (DB 0) and joins segments (/1/2 is
    DB 12): GATEWAY_REDIS_URL naming such a database stops the start, naming the part."""
    with pytest.raises(SettingsError) as caught:
        load_settings({"GATEWAY_REDIS_URL": url})
    assert str(caught.value).startswith("GATEWAY_REDIS_URL: ")
    assert says in str(caught.value)


def test_a_refused_redis_database_never_shows_the_password() -> None:
    """A password holding an unencoded '/' ends up in the path or the port: refused, and
    no part of it is echoed."""
    urls = (
        "redis://:s3cret@cache:6379/1x",
        "redis://:/s3cret@cache:6379/0",
        "redis://:s3/cret@cache:6379/0",
        "redis://user:s3/cret@cache:6379/0",
        "redis://:s3#cret@cache:6379/0",
    )
    for url in urls:
        with pytest.raises(SettingsError) as caught:
            load_settings({"GATEWAY_REDIS_URL": url})
        assert str(caught.value).startswith("GATEWAY_REDIS_URL")
        assert "s3" not in str(caught.value) and "cret" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379",
        "redis://127.0.0.1:6379/",
        "redis://127.0.0.1:6379/0",
        "redis://127.0.0.1:6379/13",
        "redis://:pw@127.0.0.1:6379/13",
        "rediss://cache.internal:6380/2",
        "redis://127.0.0.1:6379?db=13",
        "redis://127.0.0.1:6379/13?db=13",
        "unix:///run/redis.sock",
        "unix:///run/redis.sock?db=3",
    ],
)
def test_a_redis_url_naming_one_database_is_kept(url: str) -> None:
    assert load_settings({"GATEWAY_REDIS_URL": url}).redis_url == url
