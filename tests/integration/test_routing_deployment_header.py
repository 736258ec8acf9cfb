"""`x-gateway-deployment` on a routing 502/504: the last deployment tried (SPEC §2: every
response says which deployment answered); refusals before any was chosen have none."""

import openai
import pytest

from tests.support.gateway import running_gateway
from tests.support.upstream import MockUpstream

PAIR = """
providers:
  a: {{type: openai-compatible, api_base: "{a}"}}
  b: {{type: openai-compatible, api_base: "{b}"}}
models:
  m:
    deployments:
      - {{provider: a, model: model-a}}
      - {{provider: b, model: model-b, priority: 2}}
    routing: {{retries: 1, attempt_timeout_s: 0.3, timeout_s: 5}}
teams:
  demo: {{models: ["m"]}}
"""


async def ask(client: openai.AsyncOpenAI, model: str = "m") -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}]
        )
    return caught.value


@pytest.mark.parametrize(("mode", "status"), [("status", 502), ("hang", 504)])
async def test_a_failed_over_502_or_504_names_the_last_deployment_tried(tmp_path, mode, status):
    async with MockUpstream("a") as a, MockUpstream("b") as b:
        a.behave(mode, status=500)
        b.behave(mode, status=500)
        async with running_gateway(tmp_path, PAIR.format(a=a.base_url, b=b.base_url)) as gw:
            error = await ask(await gw.openai())
    assert error.status_code == status
    assert error.response.headers["x-gateway-deployment"] == "b/model-b"


async def test_refusals_before_routing_name_no_deployment(tmp_path):
    async with MockUpstream("a") as a, MockUpstream("b") as b:
        async with running_gateway(tmp_path, PAIR.format(a=a.base_url, b=b.base_url)) as gw:
            missing = await ask(await gw.openai(), model="no-such-model")
            client = openai.AsyncOpenAI(base_url=gw.base_url, api_key="bad", max_retries=0)
            unauthenticated = await ask(client)
            await client.close()
    assert missing.status_code == 404 and unauthenticated.status_code == 401
    assert "x-gateway-deployment" not in missing.response.headers
    assert "x-gateway-deployment" not in unauthenticated.response.headers
