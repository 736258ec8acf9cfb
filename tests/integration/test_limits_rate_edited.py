"""An edited rpm keeps what the minute used (issue 9: editing a limit never changes
recorded usage): tightened, a team that used the new limit already is refused at once,
with a retry-after of at most a minute; loosened, it gets the difference.

A real gateway (127.0.0.1) in front of a mock upstream, the openai SDK as client, the
admin API's PATCH to edit the team. Both backends: in process, and the shared test Redis.
"""

from __future__ import annotations

import uuid

import openai
import pytest

from tests.support.admin import admin_client
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.upstream import MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  chat:
    deployments: [{{provider: up, model: upstream-chat}}]
teams:
  {team}:
    models: ["*"]
    limits: {{rpm: 5}}
"""


@pytest.fixture(params=["in process", "redis"])
def backend(request: pytest.FixtureRequest) -> dict[str, object]:
    if request.param == "in process":
        return {}
    return {"redis_url": request.getfixturevalue("redis_url")}


async def ask(client: openai.AsyncOpenAI) -> None:
    await client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])


async def set_rpm(gw: RunningGateway, team: str, rpm: int, base_version: int) -> None:
    admin = await gw.token(team, scopes=("gateway:admin",))
    async with admin_client(gw.origin, admin) as api:
        status, answer = await api.call(
            "PATCH",
            f"/admin/teams/{team}",
            {"changes": {"limits": {"rpm": rpm}}, "reason": "rpm", "base_version": base_version},
        )
    assert status == 200, answer


async def test_an_edited_rpm_counts_the_requests_the_minute_already_had(tmp_path, backend):
    team = f"rpm{uuid.uuid4().hex[:8]}"
    async with MockUpstream(name="up") as up:
        async with running_gateway(
            tmp_path, POLICY.format(base=up.base_url, team=team), **backend
        ) as gw:
            client = await gw.openai(team, max_retries=0)
            for _ in range(5):
                await ask(client)
            await set_rpm(gw, team, 3, base_version=1)  # tightened below what was used
            with pytest.raises(openai.RateLimitError) as refused:
                await ask(client)
            retry_s = float(refused.value.response.headers["retry-after"])
            assert 0 < retry_s <= 60
            await set_rpm(gw, team, 7, base_version=2)  # loosened: two more, not seven
            for _ in range(2):
                await ask(client)
            with pytest.raises(openai.RateLimitError):
                await ask(client)
            assert len(up.requests) == 7
