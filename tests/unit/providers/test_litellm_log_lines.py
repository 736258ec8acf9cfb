"""litellm's loggers write no plain-text line of their own: its per-request warnings (a
`reasoning_effort` it drops for a Claude model, quoting the caller's value) went to
stderr beside the gateway's JSON lines, twice a request (probe p19). Its errors still
reach the gateway's handlers."""

import logging

import pytest

from gateway.providers.litellm_http import LITELLM_LOGGERS, litellm_module


@pytest.mark.parametrize("name", LITELLM_LOGGERS)
def test_litellm_s_warnings_print_nothing_and_its_errors_reach_ours(name, capfd, caplog):
    litellm_module()
    caplog.set_level(logging.WARNING)
    logging.getLogger(name).warning("Dropping reasoning_effort='high' for model='claude'")
    logging.getLogger(name).error("litellm broke")
    assert capfd.readouterr().err == ""
    assert [r.getMessage() for r in caplog.records if r.name == name] == ["litellm broke"]
