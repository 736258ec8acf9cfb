"""The collector's address and credentials: what the OTLP export sends with each batch.

Pure functions, no OpenTelemetry import (settings.py checks these at start, with
tracing off too). Credentials come from the endpoint URL's userinfo (HTTP Basic) and
from OpenTelemetry's standard header variables; they go into request headers only,
never into a log line, an error or a span: `shown_url` is the endpoint as it may be shown.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit, urlunsplit

HEADERS_ENV = "OTEL_EXPORTER_OTLP_HEADERS"
TRACES_HEADERS_ENV = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
# RFC 9110's token: what a header name may be.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_USERINFO = re.compile(r"(?<=://)[^/?#]*@")

Headers = tuple[tuple[str, str], ...]


def shown_url(url: str) -> str:
    """`url` without its userinfo (user and password), as logs and errors may show it."""
    return _USERINFO.sub("", url, count=1)


def basic_auth(url: str) -> str | None:
    """The `authorization` value for the URL's userinfo (HTTP Basic, percent-decoded), or
    None without one."""
    parts = urlsplit(url)
    if parts.username is None:
        return None
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def without_userinfo(url: str) -> str:
    """The URL to connect to: the same, less the credentials (they go in a header)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def parse_headers(raw: str, variable: str) -> dict[str, str]:
    """An OTEL_EXPORTER_OTLP_*HEADERS value: comma-separated `key=value` pairs (W3C
    baggage style), each percent-decoded, names lowercased. ValueError, naming the
    variable and the pair's position but never a value, for a pair that is no header."""
    found: dict[str, str] = {}
    for number, pair in enumerate(raw.split(","), start=1):
        if not pair.strip():
            continue
        name, equals, value = pair.partition("=")
        name, value = unquote(name).strip().lower(), unquote(value).strip()
        if not equals or not _TOKEN.fullmatch(name):
            raise ValueError(f"{variable}: pair {number} is not key=value with a header name")
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"{variable}: the value of {name!r} holds a line break or NUL")
        found[name] = value
    return found


def configured_headers(env: Mapping[str, str]) -> Headers:
    """The headers both variables set; the traces one wins per name (OpenTelemetry's rule)."""
    found = parse_headers(env.get(HEADERS_ENV, ""), HEADERS_ENV)
    found.update(parse_headers(env.get(TRACES_HEADERS_ENV, ""), TRACES_HEADERS_ENV))
    return tuple(found.items())


def request_headers(url: str, configured: Headers, content_type: str) -> dict[str, str]:
    """Every export POST's headers: the userinfo's Basic auth, then the configured ones
    (which may replace it), and our content type."""
    headers: dict[str, str] = {}
    auth = basic_auth(url)
    if auth is not None:
        headers["authorization"] = auth
    headers.update(configured)
    headers["content-type"] = content_type
    return headers
