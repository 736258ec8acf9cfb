"""A request whose estimate alone is more than a whole budget is refused at once with
429 `insufficient_quota`, even while Redis is unreachable: no counter could ever let it
through, so neither `on_backend_error: closed` (503, which the SDK retries) nor `open`
(served unchecked) applies to it. One that fits still gets the policy's answer.

A real gateway (in process, on 127.0.0.1) whose Redis URL has nobody listening, the
built-in mock provider, the openai SDK as the client."""

from __future__ import annotations

import openai
import pytest

from tests.support.gateway import running_gateway
from tests.support.mock_policy import MOCK_CHAT
from tests.support.redis_server import free_port

POLICY = (
    MOCK_CHAT
    + """limits: {on_backend_error: MODE}
teams:
  small:
    models: ["*"]
    budgets:
      - {period: day, tokens: 500}
"""
)
ASK = [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize("mode", ["closed", "open"])
async def test_an_estimate_over_the_whole_budget_is_refused_with_redis_away(
    tmp_path, mode: str
) -> None:
    url = f"redis://127.0.0.1:{free_port()}"  # nobody listening
    async with running_gateway(tmp_path, POLICY.replace("MODE", mode), redis_url=url) as gw:
        client = await gw.openai("small", max_retries=0)
        with pytest.raises(openai.RateLimitError) as refused:
            await client.chat.completions.with_raw_response.create(
                model="chat", messages=ASK, max_tokens=10_000
            )
        error = refused.value
        assert error.code == "insufficient_quota"
        assert error.response.headers["x-should-retry"] == "false"
        assert "retry-after" not in error.response.headers
        assert "more than" in error.message and "500" in error.message

        # One that fits: the policy's answer for an unreachable store.
        if mode == "closed":
            with pytest.raises(openai.InternalServerError) as unavailable:
                await client.chat.completions.create(model="chat", messages=ASK, max_tokens=10)
            assert unavailable.value.code == "limits_unavailable"
        else:
            answer = await client.chat.completions.create(model="chat", messages=ASK, max_tokens=10)
            assert answer.choices[0].message.content
