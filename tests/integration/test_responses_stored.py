"""The stored-response routes of OpenAI's Responses API (retrieve, delete, input items,
input token count): the gateway keeps no responses, and says so in OpenAI's shape rather
than "Unknown path" (black-box probe as an agent developer)."""

from __future__ import annotations

import httpx2 as httpx
import openai
import pytest

from tests.support.gateway import running_gateway

POLICY = """
providers:
  demo: {type: mock}
models:
  m:
    deployments: [{provider: demo, model: mock-model}]
teams:
  demo: {models: ["*"]}
"""


async def test_the_sdks_stored_response_calls_get_a_plain_404(tmp_path):
    async with running_gateway(tmp_path, POLICY) as gw:
        client = await gw.openai()
        calls = [
            lambda: client.responses.retrieve("resp_123"),
            lambda: client.responses.delete("resp_123"),
            lambda: client.responses.input_items.list("resp_123"),
        ]
        for call in calls:
            with pytest.raises(openai.NotFoundError) as caught:
                await call()
            assert "does not serve" in caught.value.message
            assert "previous_response_id" in caught.value.message


async def test_a_stored_response_route_still_needs_a_token(tmp_path):
    async with running_gateway(tmp_path, POLICY) as gw:
        async with httpx.AsyncClient(base_url=gw.origin) as http:
            anonymous = await http.get("/v1/responses/resp_123")
            counted = await http.post(
                "/v1/responses/input_tokens",
                json={"model": "m", "input": "hi"},
                headers={"authorization": f"Bearer {await gw.token()}"},
            )
    assert anonymous.status_code == 401
    assert counted.status_code == 404
    assert counted.json()["error"]["type"] == "invalid_request_error"
