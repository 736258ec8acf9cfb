"""IP addresses written as a URL's host: judged by the upstream rules as the resolver judges
a name's addresses (aiohttp connects to them without asking a resolver)."""

from __future__ import annotations

import pytest
from yarl import URL

from gateway.policy.upstreams import Listener, UpstreamRules, parse_upstream_allow
from gateway.providers.resolver import literal_refusal

ALLOW_ONE = UpstreamRules(parse_upstream_allow("127.0.0.1/32"), None)
ANYWHERE = UpstreamRules(None, Listener("127.0.0.1", 8080))


@pytest.mark.parametrize(
    ("url", "rules", "reason"),
    [
        ("http://127.0.0.2:9000/redirected/v1/messages", ALLOW_ONE, "host 127.0.0.2 is not in"),
        ("http://169.254.169.254/latest/meta-data/", ANYWHERE, "cloud metadata address"),
        ("http://[fe80::1]:80/", ANYWHERE, "cloud metadata address"),
        ("http://[::ffff:169.254.169.254]/", ANYWHERE, "cloud metadata address"),
        ("http://127.0.0.1:8080/v1/chat/completions", ANYWHERE, "the gateway's own listener"),
    ],
)
def test_a_refused_address_is_named_without_its_path(
    url: str, rules: UpstreamRules, reason: str
) -> None:
    refusal = literal_refusal(URL(url), rules)
    assert refusal is not None and reason in refusal
    assert URL(url).path.strip("/") not in refusal.split()  # hosts and ports only, no path


@pytest.mark.parametrize(
    ("url", "rules"),
    [
        ("http://127.0.0.1:9000/v1/messages", ALLOW_ONE),
        ("http://10.1.2.3/", ANYWHERE),
        ("http://127.0.0.1:9000/", ANYWHERE),  # not the listener's port
        ("https://api.anthropic.com/v1/messages", ALLOW_ONE),  # a name: the resolver's
        ("http://169.254.169.254.nip.io/", ANYWHERE),  # a name: the resolver's
    ],
)
def test_an_allowed_address_or_a_name_passes(url: str, rules: UpstreamRules) -> None:
    assert literal_refusal(URL(url), rules) is None
