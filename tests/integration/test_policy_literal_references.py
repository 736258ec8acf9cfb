"""`$${NAME}` writes the literal text `${NAME}`: outside the providers it is what a guardrail
matches, never a reference (`policy check` and PUT accept it), and GET shows it as written."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import openai
import pytest

from tests.support.gateway import running_gateway
from tests.support.processes import run_gateway

POLICY = """\
providers:
  demo: {type: mock}
models:
  small: {deployments: [{provider: demo, model: mock-small}]}
teams:
  demo: {models: ["*"], guardrails: [shell]}
guardrails:
  shell:
    input:
      - {detector: keywords, name: shell-variable, keywords: ['$${HOME}'], action: block}
"""


def test_policy_check_accepts_an_escaped_reference(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "bundle.yaml").write_text(POLICY)
    checked = run_gateway("policy", "check", str(folder), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr


async def test_the_guardrail_matches_the_literal_text(tmp_path: Path) -> None:
    """`${HOME}` in a prompt is blocked by the keyword written `$${HOME}`; `HOME` alone is not."""
    async with running_gateway(tmp_path, POLICY) as gw:
        client = await gw.openai()
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(
                model="small", messages=[{"role": "user", "content": "echo ${HOME} please"}]
            )
        assert refused.value.code == "content_policy_violation"
        answer = await client.chat.completions.create(
            model="small", messages=[{"role": "user", "content": "echo $HOME please"}]
        )
        assert answer.choices[0].message.content

        token = await gw.token(scopes=["gateway:admin"])
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{gw.origin}/admin/policy", headers={"authorization": f"Bearer {token}"}
            ) as response:
                running = await response.json()
        rule = running["bundle"]["guardrails"]["shell"]["input"][0]
        assert rule["keywords"] == ["$${HOME}"]  # as written
