"""A stand-in OpenTelemetry collector for benchmarks: accepts OTLP/HTTP posts, answers 200.

It reads each batch whole (as a collector would) and counts spans' batches, nothing more.
Run: .venv/bin/python bench/otlp_sink.py PORT (pin it to the load core with taskset).
"""

from __future__ import annotations

import sys

from aiohttp import web

batches = 0


async def receive(request: web.Request) -> web.Response:
    global batches  # noqa: PLW0603 - one counter in a throwaway process
    await request.read()
    batches += 1
    return web.Response(status=200, content_type="application/x-protobuf", body=b"")


def main() -> None:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", receive)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)


if __name__ == "__main__":
    main()
