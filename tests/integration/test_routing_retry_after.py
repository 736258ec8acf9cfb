"""An upstream's long Retry-After through the real gateway: bounded in the deployment's
cooldown and never copied to the client, which hears the gateway's own estimate."""

import time
from email.utils import formatdate

import openai
import pytest

from gateway.routing.health import RETRY_AFTER_CAP_S
from tests.support.gateway import running_gateway
from tests.support.upstream import MockUpstream

SINGLE = """
providers:
  a: {{type: openai-compatible, api_base: "{a}"}}
models:
  m:
    deployments: [{{provider: a, model: model-a}}]
    routing: {{retries: 0, cooldown_s: 30, failure_threshold: 1}}
teams:
  demo: {{models: ["*"]}}
"""


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_a_day_long_upstream_retry_after_is_not_the_clients(tmp_path, form):
    """`retry-after: 86400` (or a date a day ahead) on a 429: the 502 says at most the cap."""
    day = {"seconds": "86400", "http-date": formatdate(time.time() + 86400, usegmt=True)}[form]
    async with MockUpstream("a") as a:
        a.behave("status", status=429, headers={"retry-after": day})
        async with running_gateway(tmp_path, SINGLE.format(a=a.base_url)) as gw:
            with pytest.raises(openai.InternalServerError) as caught:
                await (await gw.openai()).chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "hi"}]
                )
            health = gw.services.health
            [deployment] = gw.services.policy.current().models["m"].deployments
            cooling_for = health.of(deployment).cooling_until - health.clock()
    assert caught.value.status_code == 502
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= RETRY_AFTER_CAP_S
    assert cooling_for <= RETRY_AFTER_CAP_S
