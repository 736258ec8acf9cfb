"""The minimal RESP client's framing: commands packed, replies parsed at any split."""

from __future__ import annotations

import pytest

from gateway.limits.resp import NoScript, RespConnection, RespError, _Incomplete, pack, parse

REPLIES: list[tuple[bytes, object]] = [
    (b":42\r\n", 42),
    (b":-7\r\n", -7),
    (b"+OK\r\n", b"OK"),
    (b"$5\r\nhello\r\n", b"hello"),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b"*-1\r\n", None),
    (b"*0\r\n", []),
    (b"*3\r\n:0\r\n:59\r\n$4\r\nab\r\n\r\n", [0, 59, b"ab\r\n"]),
    (b"*2\r\n*1\r\n:1\r\n$-1\r\n", [[1], None]),
]


def test_a_command_is_an_array_of_bulk_strings() -> None:
    assert pack(("EVALSHA", b"ab", 2, -1)) == (
        b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n2\r\n$2\r\n-1\r\n"
    )
    assert pack(("SET", "k", "é")) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\xc3\xa9\r\n"


@pytest.mark.parametrize(("wire", "value"), REPLIES)
def test_every_reply_kind_parses_and_a_cut_one_waits_for_more(wire: bytes, value: object) -> None:
    assert parse(wire, 0) == (value, len(wire))
    for cut in range(len(wire)):
        with pytest.raises(_Incomplete):
            parse(wire[:cut], 0)


def test_replies_back_to_back_parse_one_after_another() -> None:
    wire = b"".join(w for w, _ in REPLIES)
    pos, values = 0, []
    while pos < len(wire):
        value, pos = parse(wire, pos)
        values.append(value)
    assert values == [v for _, v in REPLIES]


def test_an_error_reply_is_a_value_and_noscript_is_told_apart() -> None:
    error, _ = parse(b"-ERR wrong number of arguments\r\n", 0)
    assert type(error) is RespError and "wrong number" in str(error)
    missing, _ = parse(b"-NOSCRIPT No matching script.\r\n", 0)
    assert isinstance(missing, NoScript)


def test_an_unknown_reply_type_is_a_broken_connection() -> None:
    with pytest.raises(ConnectionError):
        parse(b"%1\r\n", 0)


def test_the_url_gives_host_port_credentials_and_database() -> None:
    conn = RespConnection.from_url("redis://user:p%40ss@example.org:6380/3", timeout_s=1)
    assert conn is not None
    assert (conn._host, conn._port, conn._username, conn._password, conn._db, conn._tls) == (
        "example.org",
        6380,
        "user",
        "p@ss",
        3,
        False,
    )
    secure = RespConnection.from_url("rediss://:secret@h", timeout_s=1)
    assert secure is not None and (secure._port, secure._password, secure._tls) == (
        6379,
        "secret",
        True,
    )


@pytest.mark.parametrize(
    "url",
    ["unix:///tmp/redis.sock", "redis://h/not-a-db", "redis://h:6379/0?ssl_cert_reqs=none", "x"],
)
def test_urls_it_cannot_serve_are_left_to_redis_py(url: str) -> None:
    assert RespConnection.from_url(url, timeout_s=1) is None
