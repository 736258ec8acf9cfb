"""The baseline the gateway's cost is compared to: a bare forwarder.

A Starlette app with one route, `POST /v1/chat/completions`, forwarding through
one pooled aiohttp `ClientSession` (created and closed in the lifespan) to
`--upstream`. JSON: read the body, post it, return the upstream's bytes. Stream
(`"stream": true` in the body): relay the upstream's chunks as they arrive with a
`StreamingResponse`. No auth, no policy, no logging: what any Python proxy on
this stack must pay at least. Served by uvicorn with uvloop + httptools, 1 worker,
access log off.

    python bench/baseline_forwarder.py --port 9002 --upstream http://127.0.0.1:9001
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

_FORWARD_HEADERS = {"content-type": "application/json"}


def build_app(upstream: str) -> Starlette:
    url = upstream.rstrip("/") + "/v1/chat/completions"

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, aiohttp.ClientSession]]:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        async with aiohttp.ClientSession(connector=connector) as session:
            yield {"session": session}

    async def chat(request: Request) -> Response:
        session: aiohttp.ClientSession = request.state.session
        body = await request.body()
        stream = orjson.loads(body).get("stream") is True
        upstream_response = await session.post(url, data=body, headers=_FORWARD_HEADERS)
        if not stream:
            async with upstream_response:
                content = await upstream_response.read()
            return Response(
                content,
                status_code=upstream_response.status,
                media_type=upstream_response.content_type,
            )

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in upstream_response.content.iter_any():
                    yield chunk
            finally:
                upstream_response.release()

        return StreamingResponse(
            relay(), status_code=upstream_response.status, media_type="text/event-stream"
        )

    return Starlette(
        routes=[Route("/v1/chat/completions", chat, methods=["POST"])], lifespan=lifespan
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--upstream", required=True, help="base URL of the upstream, e.g. http://127.0.0.1:9001"
    )
    args = parser.parse_args()

    import uvicorn

    uvicorn.run(
        build_app(args.upstream),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        workers=1,
        access_log=False,
        log_level="warning",
        backlog=4096,
    )


if __name__ == "__main__":
    main()
