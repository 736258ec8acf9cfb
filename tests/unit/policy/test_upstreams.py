"""Where an api_base may point: the allow-list, metadata addresses, the gateway's own port."""

from __future__ import annotations

import pytest

from gateway.policy.upstreams import (
    Listener,
    UpstreamRules,
    host_address,
    parse_upstream_allow,
    upstream_refusal,
)

LISTENER = Listener("127.0.0.1", 8080)
ANY = UpstreamRules(None, LISTENER)


def rules(allow: str | None, listener: Listener | None = LISTENER) -> UpstreamRules:
    return UpstreamRules(parse_upstream_allow(allow) if allow is not None else None, listener)


@pytest.mark.parametrize(
    "url",
    [
        "https://api.openai.com/v1",
        "http://vllm:8000/v1",
        "http://127.0.0.1:9000/v1",  # loopback on another port: a local model server
        "http://[::1]:8000/v1",
        "http://10.0.0.7/v1",
        "http://192.168.1.2:11434",
        "http://localhost:8081",
    ],
)
def test_without_an_allow_list_any_ordinary_host_is_accepted(url: str) -> None:
    """Unset GATEWAY_UPSTREAM_ALLOW: any host, loopback and private included."""
    assert upstream_refusal(url, ANY) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://169.254.170.2/v2/credentials",  # ECS task credentials
        "http://[fd00:ec2::254]/latest",
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",  # IPv4-mapped
        "http://2852039166/",  # 169.254.169.254 as one decimal number
        "http://0xa9.0xfe.0xa9.0xfe/",
        "http://0251.0376.0251.0376/",
        "http://169.254.169.254./",  # trailing dot
        "http://100.100.100.200/latest",  # Alibaba Cloud
        "http://metadata.google.internal/computeMetadata/v1",
        "http://METADATA.GOOGLE.INTERNAL./",
        "http://metadata/",
        "http://instance-data.ec2.internal/",
        "http://[fd20:ce::254]/computeMetadata/v1",  # GCP over IPv6
        "http://[fd00:c1::a9fe:a9fe]/opc/v2/",  # Oracle Cloud over IPv6
        "http://[fd00:ec2::23]/v1/credentials",  # EKS Pod Identity over IPv6
        "http://[fd00:42::42]/conf",  # Scaleway over IPv6
        "http://192.0.0.192/",  # Oracle Cloud Classic
        "http://168.63.129.16/machine?comp=goalstate",  # Azure WireServer
        "http://[::ffff:168.63.129.16]/",
        "http://metadata.tencentyun.com/latest/meta-data/",
    ],
)
def test_metadata_and_link_local_hosts_are_refused_by_default(url: str) -> None:
    """Cloud metadata endpoints hand out credentials: refused even with no allow-list."""
    refusal = upstream_refusal(url, ANY)
    assert refusal is not None and "metadata" in refusal


@pytest.mark.parametrize(
    ("allow", "url"),
    [
        ("169.254.169.254", "http://169.254.169.254/x"),
        ("169.254.0.0/16", "http://169.254.170.2/x"),
        ("metadata.google.internal", "http://metadata.google.internal/x"),
        ("fd00:ec2::254", "http://[fd00:ec2::254]/x"),
    ],
)
def test_metadata_hosts_pass_when_the_allow_list_names_them(allow: str, url: str) -> None:
    assert upstream_refusal(url, rules(allow)) is None


@pytest.mark.parametrize(
    ("allow", "url"),
    [
        ("0.0.0.0/0", "http://169.254.169.254/x"),  # a catch-all is not naming it
        ("169.0.0.0/8", "http://169.254.169.254/x"),  # broader than link-local
        ("*.internal", "http://metadata.google.internal/x"),
        ("::/0", "http://[fd00:ec2::254]/x"),
    ],
)
def test_broad_allow_entries_do_not_open_metadata(allow: str, url: str) -> None:
    assert upstream_refusal(url, rules(allow)) is not None


@pytest.mark.parametrize(
    ("listener", "url", "is_refused"),
    [
        (Listener("127.0.0.1", 8080), "http://127.0.0.1:8080/v1", True),
        (Listener("127.0.0.1", 8080), "http://localhost:8080/v1", True),
        (Listener("127.0.0.1", 8080), "http://[::1]:8080/v1", True),
        (Listener("127.0.0.1", 8080), "http://127.0.0.1:8081/v1", False),
        (Listener("127.0.0.1", 80), "http://localhost/v1", True),  # default port of http
        (Listener("127.0.0.1", 443), "https://localhost/v1", True),
        (Listener("0.0.0.0", 9000), "http://127.0.0.2:9000/", True),
        (Listener("0.0.0.0", 9000), "http://0.0.0.0:9000/", True),
        (Listener("::", 9000), "http://localhost:9000/", True),
        (Listener("10.1.2.3", 9000), "http://10.1.2.3:9000/", True),
        (Listener("10.1.2.3", 9000), "http://127.0.0.1:9000/", False),
        (Listener("gw.internal", 9000), "http://GW.internal:9000/", True),
    ],
)
def test_the_gateways_own_listener_is_refused(
    listener: Listener, url: str, *, is_refused: bool
) -> None:
    """An api_base at the gateway itself would loop each request back into it."""
    refusal = upstream_refusal(url, UpstreamRules(None, listener))
    assert (refusal is not None) == is_refused
    if is_refused:
        assert refusal is not None and "own listener" in refusal


@pytest.mark.parametrize("allow", ["127.0.0.1", "127.0.0.1/32", "127.0.0.0/8", "localhost"])
def test_no_allow_list_entry_opens_the_listener(allow: str) -> None:
    """`127.0.0.1` listed for a model server beside the gateway opens that host's other
    ports, never the gateway's own (the list has no ports)."""
    for url in ("http://127.0.0.1:8080/", "http://localhost:8080/v1"):
        refusal = upstream_refusal(url, rules(allow))
        assert refusal is not None and "own listener" in refusal
    assert upstream_refusal("http://127.0.0.1:8000/v1", rules("127.0.0.1")) is None


@pytest.mark.parametrize(
    ("url", "is_allowed"),
    [
        ("https://api.openai.com/v1", True),
        ("https://API.OpenAI.com./v1", True),
        ("https://evil.example/v1", False),
        ("https://eu.models.corp/v1", True),
        ("https://models.corp/v1", False),  # *.models.corp is subdomains only
        ("http://10.20.30.40:8000/v1", True),
        ("http://10.21.0.1/v1", False),
        ("http://[2001:db8::5]/v1", True),
        ("http://127.0.0.1:9000/v1", False),  # loopback too, once a list is set
    ],
)
def test_with_an_allow_list_only_its_hosts_pass(url: str, *, is_allowed: bool) -> None:
    allow = "api.openai.com, *.models.corp, 10.20.0.0/16, 2001:db8::/32"
    assert (upstream_refusal(url, rules(allow)) is None) == is_allowed


@pytest.mark.parametrize(
    "entry",
    ["https://api.openai.com", "api.openai.com:443", "10.0.0.0/33", "a b", "*", "host/path"],
)
def test_bad_allow_list_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="not a host name"):
        parse_upstream_allow(f"api.openai.com,{entry}")


def test_rules_from_the_environment_name_the_variable() -> None:
    with pytest.raises(ValueError, match="GATEWAY_UPSTREAM_ALLOW"):
        UpstreamRules.from_env({"GATEWAY_UPSTREAM_ALLOW": "https://x"})
    found = UpstreamRules.from_env({"GATEWAY_HOST": "0.0.0.0", "GATEWAY_PORT": "9001"})
    assert found.allow is None and found.listener == Listener("0.0.0.0", 9001)
    assert UpstreamRules.from_env({}).listener == Listener("127.0.0.1", 8080)
    assert UpstreamRules.from_env({"GATEWAY_PORT": "0"}).listener is None
    assert UpstreamRules.from_env({"GATEWAY_UPSTREAM_ALLOW": " "}).allow is None  # empty: unset


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("169.254.169.254", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("0x7f.1", "127.0.0.1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("fe80::1%eth0", "fe80::1"),
        ("api.openai.com", None),
        ("cafe", None),
        ("deadbeef", None),
    ],
)
def test_host_address_reads_every_notation_a_resolver_accepts(
    host: str, address: str | None
) -> None:
    found = host_address(host)
    assert (str(found) if found is not None else None) == address


@pytest.mark.parametrize("url", ["ftp://x/", "http:///v1", "http://host:99999/", "not a url"])
def test_unusable_urls_are_refused(url: str) -> None:
    assert upstream_refusal(url, ANY) is not None


@pytest.mark.parametrize(
    "url",
    [
        "http://169\u3002254\u3002169\u3002254/v1",  # ideographic full stops
        "http://\uff11\uff16\uff19.\uff12\uff15\uff14.\uff11\uff16\uff19.\uff12\uff15\uff14/v1",
        "http://\uff4d\uff45\uff54\uff41\uff44\uff41\uff54\uff41.google.internal/v1",
        "http://169\uff0e254\uff0e169\uff0e254/v1",  # full-width full stops
        "http://b\u00fccher.example/v1",  # a real IDN: written as xn--bcher-kva.example
    ],
)
def test_hosts_not_written_in_ascii_are_refused(url: str) -> None:
    """The HTTP client folds look-alikes into ASCII (169.254.169.254): refused as written."""
    refusal = upstream_refusal(url, ANY)
    assert refusal is not None and "ASCII" in refusal


def test_look_alikes_of_the_listener_are_refused() -> None:
    refusal = upstream_refusal("http://127\u30020\u30020\u30021:8080/v1", ANY)
    assert refusal is not None


@pytest.mark.parametrize(
    "url",
    [
        "http://[64:ff9b::a9fe:a9fe]/v1",  # NAT64 well-known prefix
        "http://[64:ff9b::169.254.169.254]/v1",
        "http://[2002:a9fe:a9fe::]/v1",  # 6to4
        "http://[2002:a9fe:a9fe:1::5]/v1",
        "http://[::169.254.169.254]/v1",  # IPv4-compatible
        "http://[::a9fe:a9fe]/v1",
        "http://[64:ff9b::6464:64c8]/latest",  # 100.100.100.200
        "http://[64:ff9b:1::a9fe:a9fe]/v1",  # NAT64 local-use prefix (RFC 8215), /96 form
        "http://[64:ff9b:1:a9fe:a9:fe00::]/v1",  # the same, RFC 6052's /48 form
        "http://[64:ff9b:1:0:a9:fea9:fe00:0]/v1",  # the same, the /64 form
    ],
)
def test_ipv6_forms_embedding_a_metadata_address_are_refused(url: str) -> None:
    refusal = upstream_refusal(url, ANY)
    assert refusal is not None and "metadata" in refusal


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
        ("2002:a9fe:a9fe::", "169.254.169.254"),
        ("::169.254.169.254", "169.254.169.254"),
        ("::1", "::1"),  # loopback, not IPv4-compatible 0.0.0.1
        ("64:ff9b:1::102:304", "1.2.3.4"),  # NAT64 local use: no placement is risky, /96
        ("64:ff9b:1:7f00:0:100::", "127.0.0.1"),  # NAT64 local use, /48 placement: loopback
        ("2001:db8::1", "2001:db8::1"),
    ],
)
def test_host_address_reads_the_ipv4_inside_ipv6(host: str, address: str) -> None:
    assert str(host_address(host)) == address


def test_an_embedded_loopback_on_the_listener_port_is_the_listener() -> None:
    refusal = upstream_refusal("http://[2002:7f00:1::]:8080/v1", ANY)
    assert refusal is not None and "own listener" in refusal


def test_allow_list_hosts_are_checked_as_the_client_connects() -> None:
    """A look-alike of an allowed host is refused too: it is not ASCII."""
    assert upstream_refusal("https://\uff41pi.openai.com/v1", rules("api.openai.com")) is not None
