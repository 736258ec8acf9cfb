"""The admin API reads its own writes and stays responsive (SPEC §4, §5; issue 8 items 4, 6, 10).

The replica that made a change enforces it before answering, so GET → edit →
PUT never meets a spurious 409; paging cursors out of range are 400; a diff
of a huge policy does not stall other requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import openai
import pytest

from tests.support.admin import ADMIN_POLICY, Admin, admin_client
from tests.support.gateway import RunningGateway, running_gateway

POLICY = ADMIN_POLICY


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(tmp_path, POLICY) as gateway:
        yield gateway


@pytest.fixture
async def admin(gw: RunningGateway) -> AsyncIterator[Admin]:
    token = await gw.token(team="demo", scopes=["gateway:admin"], subject="alice")
    async with admin_client(gw.origin, token) as client:
        yield client


async def test_get_right_after_put_shows_the_new_version_and_the_next_put_succeeds(
    admin: Admin,
) -> None:
    """GET → edit → PUT twice in a row, no sleep: each GET shows the version just written."""
    for expected in (1, 2, 3):
        status, running = await admin.call("GET", "/admin/policy")
        assert status == 200 and running["version"] == expected
        bundle = running["bundle"]
        bundle["teams"][f"t{expected}"] = {"models": ["small"]}
        status, put = await admin.call(
            "PUT", "/admin/policy", {"bundle": bundle, "base_version": running["version"]}
        )
        assert status == 200, put
        assert put["version"] == expected + 1


async def test_a_request_right_after_a_patch_sees_the_change(
    gw: RunningGateway, admin: Admin
) -> None:
    """PATCH a team's models, then call at once: 403 model_not_allowed, no waiting."""
    client = await gw.openai(team="search")
    chat = {"model": "large", "messages": [{"role": "user", "content": "hi"}]}
    await client.chat.completions.create(**chat)  # type: ignore[call-overload]
    status, _ = await admin.call(
        "PATCH", "/admin/teams/search", {"changes": {"models": ["small"]}, "base_version": 1}
    )
    assert status == 200
    with pytest.raises(openai.PermissionDeniedError):
        await client.chat.completions.create(**chat)  # type: ignore[call-overload]
    status, back = await admin.call("POST", "/admin/policy/rollback", {"version": 1})
    assert status == 200 and back["version"] == 3
    await client.chat.completions.create(**chat)  # type: ignore[call-overload]


@pytest.mark.parametrize("path", ["/admin/audit", "/admin/policy/versions"])
@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("before=-99999999999999999999999", "before"),
        ("before=99999999999999999999999", "before"),
        ("before=0", "before"),
        ("before=2147483648", "before"),
        ("limit=0", "limit"),
        ("limit=99999999999999999999999", "limit"),
        ("limit=-5", "limit"),
    ],
)
async def test_paging_numbers_out_of_range_are_400_naming_them(
    admin: Admin, path: str, query: str, param: str
) -> None:
    status, body = await admin.call("GET", f"{path}?{query}")
    assert status == 400, body
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == param
    assert len(body["error"]["message"]) < 200


async def test_the_largest_cursor_and_limit_are_accepted(admin: Admin) -> None:
    for path in ("/admin/audit", "/admin/policy/versions"):
        status, body = await admin.call("GET", f"{path}?before=2147483647&limit=1000")
        assert status == 200 and len(body["data"]) == 1, body


async def test_a_diff_of_a_huge_policy_does_not_stall_other_requests(
    gw: RunningGateway, admin: Admin
) -> None:
    """10,000 teams: while the diff is computed, /healthz keeps answering promptly."""
    status, running = await admin.call("GET", "/admin/policy")
    bundle = running["bundle"]
    bundle["teams"].update({f"team-{i:05}": {"models": ["small"]} for i in range(10_000)})
    status, put = await admin.call("PUT", "/admin/policy", {"bundle": bundle, "base_version": 1})
    assert status == 200, put
    bundle["teams"].update({f"team-{i:05}": {"models": ["large"]} for i in range(0, 10_000, 2)})
    status, put = await admin.call("PUT", "/admin/policy", {"bundle": bundle, "base_version": 2})
    assert status == 200, put

    async def health_latencies(done: asyncio.Event) -> list[float]:
        """Each /healthz round, its 10 ms pause included: the client shares the
        gateway's event loop, so a stall may fall in either."""
        seen = []
        async with aiohttp.ClientSession() as http:
            while not done.is_set():
                start = time.monotonic()
                async with http.get(f"{gw.origin}/healthz") as response:
                    assert response.status == 200
                await asyncio.sleep(0.01)
                seen.append(time.monotonic() - start)
        return seen

    done = asyncio.Event()
    pings = asyncio.create_task(health_latencies(done))
    await asyncio.sleep(0.05)
    start = time.monotonic()
    status, diff = await admin.call("GET", "/admin/policy/diff?from=1&to=3")
    took = time.monotonic() - start
    done.set()
    latencies = await pings
    assert status == 200 and diff["diff"].count("team-") >= 10_000
    print(f"diff {took:.2f} s; /healthz worst {max(latencies) * 1000:.0f} ms of {len(latencies)}")
    assert len(latencies) >= 3
    # A diff on the loop leaves one round of nearly the whole diff's time (~1-2 s); a
    # loaded machine slows every round and the diff alike, so a slow round alone is
    # not a stall (under load the worst round was ~100 ms, near a fixed 0.3 s bound).
    assert max(latencies) < max(0.3, 0.4 * took), (took, sorted(latencies)[-5:])
