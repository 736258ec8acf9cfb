"""A signed token whose team claim names no team of the policy: refused, and its ledger row
(and so finance's report) names no team, as a request without a token does; its subject
stays on the row."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.gateway import running_gateway
from tests.support.idp import FakeIdP
from tests.support.processes import GATEWAY

AUDIENCE = "probe-aud"
POLICY = """
providers:
  demo: {{type: mock}}
models:
  m: {{deployments: [{{provider: demo, model: mock-1}}]}}
teams:
  teama: {{models: [m]}}
  teamb: {{models: [m]}}
auth:
  issuers:
    - {{issuer: "{issuer}", audience: {audience}, team_claim: team}}
"""
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
# Look-alikes of teamb: a trailing space, a fullwidth b, a Cyrillic be, a path.
LOOK_ALIKES = ("teamb ", "team\uff42", "team\u0431", "../teamb")


def ledger_rows(tmp_path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM usage_ledger ORDER BY at_ms, rowid")]


def usage_report(tmp_path: Path, month: str) -> dict[str, Any]:
    """`gateway report usage --format json`, as finance runs it against the database."""
    env = {**os.environ, "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/gateway.db"}
    done = subprocess.run(
        [GATEWAY, "report", "usage", "--month", month, "--format", "json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=120,
        check=True,
    )
    return dict(json.loads(done.stdout))


async def test_a_team_claim_naming_no_team_leaves_no_team_on_its_row(tmp_path: Path) -> None:
    """Look-alikes of teamb get 401 (403 without gateway:invoke); their rows have team NULL
    and the report counts them under no team, while teamb's own rows stay teamb's."""
    sent: list[tuple[str, str | None, int]] = [(team, None, 401) for team in LOOK_ALIKES]
    sent += [("team\u0431", "openid", 403), ("teamb", "openid", 403), ("teamb", None, 200)]
    async with FakeIdP() as idp:
        policy = POLICY.format(issuer=idp.issuer, audience=AUDIENCE)
        async with running_gateway(tmp_path, policy) as gw, aiohttp.ClientSession() as http:
            for team, scope, expected in sent:
                claims = {"aud": AUDIENCE, "team": team, "scope": scope, "sub": f"user-{team}"}
                token = idp.mint(claims)
                async with http.post(
                    f"{gw.base_url}/chat/completions",
                    json=CHAT,
                    headers={"authorization": f"Bearer {token}"},
                ) as response:
                    assert response.status == expected, (team, await response.text())
    # The gateway has stopped: its ledger writer flushed every row.
    rows = ledger_rows(tmp_path)
    assert [(row["status"], row["team"]) for row in rows] == [
        (401, None),
        (401, None),
        (401, None),
        (401, None),
        (403, None),
        (403, "teamb"),
        (200, "teamb"),
    ]
    # Who sent it is still on the row: an operator can tell which client keeps sending
    # a stale or look-alike team.
    assert [row["subject"] for row in rows] == [f"user-{team}" for team, _, _ in sent]
    report = usage_report(tmp_path, time.strftime("%Y-%m", time.gmtime()))
    requests: dict[str | None, int] = {}
    for row in report["rows"]:
        requests[row["team"]] = requests.get(row["team"], 0) + row["requests"]
    assert requests == {None: 5, "teamb": 2}
