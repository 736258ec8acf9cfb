"""Images in a prompt against a token budget: an upstream that bills 1,000 tokens per
image, ten concurrent requests with one image each, a budget that fits three. The
estimate reserves each image's worst case, so settled usage stays within the budget
plus one request's estimate error (SPEC §4); without it, all ten went through."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.limits.estimate import estimate_now
from gateway.limits.view import usage_view
from tests.support.aiohttp_app import serving
from tests.support.gateway import running_gateway

BUDGET = 5_000
CAP = 50
BILLED_PER_IMAGE = 1_000
TEXT_TOKENS = 10
COMPLETION_TOKENS = 5
POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  m: {{deployments: [{{provider: up, model: gpt-4o}}]}}
teams:
  pics:
    models: [m]
    budgets: [{{period: day, tokens: {budget}}}]
"""
IMAGE = "data:image/png;base64," + "iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB" * 64
BODIES: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": (
        "/chat/completions",
        {
            "model": "m",
            "max_tokens": CAP,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "describe this"},
                        {"type": "image_url", "image_url": {"url": IMAGE}},
                    ],
                }
            ],
        },
    ),
    "responses": (
        "/responses",
        {
            "model": "m",
            "max_output_tokens": CAP,
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "describe this"},
                        {"type": "input_image", "image_url": IMAGE, "detail": "auto"},
                    ],
                }
            ],
        },
    ),
}


def images_in(value: Any) -> int:
    if isinstance(value, dict):
        own = value.get("type") in ("image_url", "input_image")
        return own + sum(images_in(v) for v in value.values())
    if isinstance(value, list):
        return sum(images_in(v) for v in value)
    return 0


def billing_upstream() -> web.Application:
    """Answers after 0.2 s (so requests overlap), billing 1,000 tokens per image."""

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(0.2)
        prompt = TEXT_TOKENS + BILLED_PER_IMAGE * images_in(body)
        return web.json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "a cat"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": COMPLETION_TOKENS,
                    "total_tokens": prompt + COMPLETION_TOKENS,
                },
            }
        )

    async def responses(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(0.2)
        prompt = TEXT_TOKENS + BILLED_PER_IMAGE * images_in(body)
        text = {"type": "output_text", "text": "a cat", "annotations": []}
        return web.json_response(
            {
                "id": "resp_1",
                "object": "response",
                "created_at": 0,
                "status": "completed",
                "model": body["model"],
                "output": [
                    {
                        "type": "message",
                        "id": "msg_1",
                        "role": "assistant",
                        "status": "completed",
                        "content": [text],
                    }
                ],
                "usage": {
                    "input_tokens": prompt,
                    "output_tokens": COMPLETION_TOKENS,
                    "total_tokens": prompt + COMPLETION_TOKENS,
                },
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/responses", responses)
    return app


@pytest.mark.parametrize("endpoint", ["chat", "responses"])
async def test_concurrent_image_requests_stay_within_the_budget(
    tmp_path: Path, http: aiohttp.ClientSession, endpoint: str
) -> None:
    """Ten image requests at once on a budget that fits three: the rest get 429
    insufficient_quota, and what was billed passes the budget by at most one request's
    estimate error (none here: an image is billed below its allowance)."""
    path, body = BODIES[endpoint]
    async with (
        serving(billing_upstream()) as origin,
        running_gateway(tmp_path, POLICY.format(base=f"{origin}/v1", budget=BUDGET)) as gw,
    ):
        headers = {"authorization": f"Bearer {await gw.token('pics')}"}

        async def one() -> tuple[int, Any]:
            async with http.post(gw.base_url + path, json=body, headers=headers) as response:
                return response.status, await response.json()

        results = await asyncio.gather(*(one() for _ in range(10)))
        policy = gw.services.policy.current()
        estimated = estimate_now(endpoint, body, policy.models["m"], None).tokens  # type: ignore[arg-type]
        view = await usage_view(gw.services.limits, policy, policy.teams["pics"], None)
    admitted = [status for status, _ in results if status == 200]
    refused = [reply["error"]["code"] for status, reply in results if status != 200]
    billed = TEXT_TOKENS + BILLED_PER_IMAGE + COMPLETION_TOKENS
    budget = view["budgets"][0]
    assert refused == ["insufficient_quota"] * len(refused)
    assert 0 < len(admitted) <= BUDGET // estimated
    assert budget["reserved"] == 0
    assert budget["used"] == len(admitted) * billed
    assert budget["used"] <= BUDGET + max(0, billed - estimated)
