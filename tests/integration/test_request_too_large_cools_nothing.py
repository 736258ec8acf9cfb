"""One team's prompts too large for a shared deployment (OpenAI's 429 "Request too large
… Limit N, Requested M", with a retry-after) fail over, but never cool the deployment
down for the other teams (probe p23: three such requests pushed every team onto the
fallback for up to 300 s). A busy 429 still cools it, as before."""

import openai

from tests.support.gateway import running_gateway
from tests.support.upstream import MockUpstream

TOO_LARGE = {
    "error": {
        "message": "Request too large for gpt-4o in organization org-x on tokens per min "
        "(TPM): Limit 30000, Requested 45000. The input or output tokens must be reduced "
        "in order to run successfully.",
        "type": "tokens",
        "param": None,
        "code": "rate_limit_exceeded",
    }
}
POLICY = """
providers:
  a: {{type: openai-compatible, api_base: "{a}"}}
  b: {{type: openai-compatible, api_base: "{b}"}}
models:
  m:
    deployments:
      - {{provider: a, model: model-a, priority: 1}}
      - {{provider: b, model: model-b, priority: 2}}
    routing: {{retries: 2, cooldown_s: 300, failure_threshold: 3}}
teams:
  mallory: {{models: ["*"]}}
  victim: {{models: ["*"]}}
"""


async def deployment_of(client: openai.AsyncOpenAI) -> str:
    raw = await client.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "hi"}]
    )
    return raw.headers["x-gateway-deployment"]


async def test_request_too_large_429s_do_not_move_other_teams_off_a_deployment(tmp_path):
    async with MockUpstream("a") as a, MockUpstream("b") as b:
        policy = POLICY.format(a=a.base_url, b=b.base_url)
        async with running_gateway(tmp_path, policy) as gw:
            mallory = await gw.openai(team="mallory", max_retries=0)
            victim = await gw.openai(team="victim", max_retries=0)
            a.behave("status", status=429, body=TOO_LARGE, headers={"retry-after": "300"})
            for _ in range(4):  # each fails over to b, once: a is never tried again
                assert await deployment_of(mallory) == "b/model-b"
            assert len(a.requests) == 4
            a.behave("ok")
            assert await deployment_of(victim) == "a/model-a"

            # A busy deployment's 429 (no "too large") still cools it after three.
            a.behave("status", status=429, headers={"retry-after": "300"})
            for _ in range(3):
                assert await deployment_of(mallory) == "b/model-b"
            a.behave("ok")
            assert await deployment_of(victim) == "b/model-b"
