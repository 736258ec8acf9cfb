"""The operations settings: the admin plane's port and the drain grace."""

from __future__ import annotations

import pytest

from gateway.settings import DEFAULT_DRAIN_GRACE_S, SettingsError, load_settings


def test_defaults_have_no_admin_port_and_a_30_s_grace():
    """Unset: the admin plane is on the main port; streams get 30 s after SIGTERM."""
    settings = load_settings({})
    assert settings.admin_port is None
    assert settings.drain_grace_s == DEFAULT_DRAIN_GRACE_S == 30


def test_values_are_read():
    """GATEWAY_ADMIN_PORT and GATEWAY_DRAIN_GRACE_S are read; 0 means no admin port."""
    settings = load_settings({"GATEWAY_ADMIN_PORT": "9090", "GATEWAY_DRAIN_GRACE_S": "120"})
    assert (settings.admin_port, settings.drain_grace_s) == (9090, 120)
    assert load_settings({"GATEWAY_ADMIN_PORT": "0"}).admin_port is None


def test_the_admin_port_flag_overrides_and_is_checked_against_the_port():
    """--admin-port equal to --port is refused naming both."""
    settings = load_settings({"GATEWAY_PORT": "8000"})
    assert settings.with_overrides(admin_port=9000).admin_port == 9000
    with pytest.raises(SettingsError, match="must differ from GATEWAY_PORT"):
        settings.with_overrides(admin_port=8000)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GATEWAY_ADMIN_PORT": "65536"}, "GATEWAY_ADMIN_PORT (--admin-port) must be from 1"),
        ({"GATEWAY_ADMIN_PORT": "-1"}, "GATEWAY_ADMIN_PORT (--admin-port) must be from 1"),
        ({"GATEWAY_ADMIN_PORT": "nine"}, "GATEWAY_ADMIN_PORT must be a whole number"),
        ({"GATEWAY_PORT": "9090", "GATEWAY_ADMIN_PORT": "9090"}, "must differ"),
        ({"GATEWAY_DRAIN_GRACE_S": "0"}, "GATEWAY_DRAIN_GRACE_S must be from 1 to 3600"),
        ({"GATEWAY_DRAIN_GRACE_S": "3601"}, "GATEWAY_DRAIN_GRACE_S must be from 1 to 3600"),
        ({"GATEWAY_DRAIN_GRACE_S": "1.5"}, "GATEWAY_DRAIN_GRACE_S must be a whole number"),
    ],
)
def test_bad_values_name_the_setting(env, message):
    """Each unusable value is one SettingsError naming the variable."""
    with pytest.raises(SettingsError) as raised:
        load_settings(env)
    assert message in str(raised.value)


def test_an_empty_access_log_setting_is_unset():
    """`GATEWAY_ACCESS_LOG=` (a template's empty value) is the default, stderr: it was a
    file named "", and start-up died with a traceback (probe p12)."""
    assert load_settings({"GATEWAY_ACCESS_LOG": ""}).access_log == "stderr"
    assert load_settings({"GATEWAY_ACCESS_LOG": "off"}).access_log == "off"
