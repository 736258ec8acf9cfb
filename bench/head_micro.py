"""CPU per response of writing the HTTP response head: uvicorn's httptools
`RequestResponseCycle.send` of `http.response.start` against the gateway's
(gateway/http_head.py), with a gateway answer's headers, no sockets.

    PYTHONPATH=. .venv/bin/python bench/head_micro.py [--responses 100000] [--repeat 7]

Two shapes: a JSON answer (content-type, x-request-id, x-gateway-deployment, six
x-ratelimit-*, x-gateway-cost-usd, x-gateway-tokens-estimated, content-length) and a
stream's start (the SSE headers, x-request-id, x-gateway-deployment, six
x-ratelimit-*; chunked), each after uvicorn's default date and server headers. One
cycle is reused: between two sends the loop resets what the start sets, and the cost of
that loop alone (the same for both) is subtracted. Prints the median over the repeats of
this process's CPU per response, in µs, and `build_head` alone.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
import timeit
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from gateway.http_head import GatewayCycle, build_head

DEFAULT_HEADERS = [  # what uvicorn's server state holds
    (b"date", formatdate(usegmt=True).encode()),
    (b"server", b"uvicorn"),
]
RATELIMIT_HEADERS = [
    (b"x-ratelimit-limit-requests", b"600"),
    (b"x-ratelimit-remaining-requests", b"599"),
    (b"x-ratelimit-reset-requests", b"100ms"),
    (b"x-ratelimit-limit-tokens", b"150000"),
    (b"x-ratelimit-remaining-tokens", b"149000"),
    (b"x-ratelimit-reset-tokens", b"400ms"),
]
ANSWER_HEADERS = [
    (b"x-request-id", b"req_8f14e45fceea167a5a36dedd4bea2543"),
    (b"x-gateway-deployment", b"openai/gpt-4o-mini"),
    *RATELIMIT_HEADERS,
]
JSON_HEADERS = [
    (b"content-type", b"application/json"),
    *ANSWER_HEADERS,
    (b"x-gateway-cost-usd", b"0.000123"),
    (b"x-gateway-tokens-estimated", b"false"),
    (b"content-length", b"512"),
]
STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
    *ANSWER_HEADERS,
]


class _Transport:
    """Keeps the last write."""

    written = b""

    def write(self, data: bytes) -> None:
        self.written = data


def _cycle(cls: type[RequestResponseCycle]) -> RequestResponseCycle:
    transport: Any = _Transport()
    return cls(
        scope={"method": "POST", "http_version": "1.1", "path": "/v1/chat/completions"},  # type: ignore[typeddict-item]  # only what send reads
        transport=transport,
        flow=FlowControl(transport),
        logger=logging.getLogger("bench.head"),
        access_logger=logging.getLogger("bench.head.access"),
        access_log=False,  # as `gateway serve` runs
        default_headers=DEFAULT_HEADERS,
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=True,
        on_response=lambda: None,
    )


def _sender(
    cycle: RequestResponseCycle | None, headers: list[tuple[bytes, bytes]]
) -> Callable[[], None]:
    """One response start per call; with no cycle, the reset alone (the baseline)."""
    message: Any = {"type": "http.response.start", "status": 200, "headers": headers}
    target = cycle if cycle is not None else _cycle(RequestResponseCycle)

    def reset() -> None:
        target.response_started = False
        target.chunked_encoding = None
        target.expected_content_length = 0
        target.keep_alive = True

    if cycle is None:
        return reset
    send = cycle.send

    def one() -> None:
        reset()
        for _ in send(message).__await__():  # runs to its end: writes are never paused here
            pass

    return one


def _us_per_call(fn: Callable[[], None], calls: int, repeat: int) -> float:
    timer = timeit.Timer(fn, timer=time.process_time)
    return statistics.median(timer.repeat(repeat, calls)) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--responses", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    for shape, headers in (("json", JSON_HEADERS), ("stream", STREAM_HEADERS)):
        uvicorn_cycle, gateway_cycle = _cycle(RequestResponseCycle), _cycle(GatewayCycle)
        _sender(uvicorn_cycle, headers)()
        _sender(gateway_cycle, headers)()
        same = uvicorn_cycle.transport.written == gateway_cycle.transport.written  # type: ignore[attr-defined]
        assert same, "the two heads differ"
        baseline = _us_per_call(_sender(None, headers), args.responses, args.repeat)
        uvicorn_us = (
            _us_per_call(_sender(uvicorn_cycle, headers), args.responses, args.repeat) - baseline
        )
        gateway_us = (
            _us_per_call(_sender(gateway_cycle, headers), args.responses, args.repeat) - baseline
        )
        build_us = _us_per_call(
            lambda headers=headers: build_head(200, DEFAULT_HEADERS, headers, "POST", True),  # type: ignore[misc]
            args.responses,
            args.repeat,
        )
        print(
            f"{shape:6} {len(DEFAULT_HEADERS) + len(headers)} headers: "
            f"uvicorn send {uvicorn_us:.2f} us, gateway send {gateway_us:.2f} us "
            f"({gateway_us / uvicorn_us:.2f}x), build_head alone {build_us:.2f} us"
        )


if __name__ == "__main__":
    main()
