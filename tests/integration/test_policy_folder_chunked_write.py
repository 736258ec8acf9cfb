"""A policy file written in two chunks is applied once, whole (probe E, F2): the first
chunk, valid YAML on its own, is never a version."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.gateway import running_gateway

POLICY = """\
providers:
  demo: {type: mock}
models:
  small: {deployments: [{provider: demo, model: mock-small}]}
teams:
  demo: {models: ["*"]}
"""
HEAD = POLICY.replace('  demo: {models: ["*"]}\n', "  demo: {models: [small]}\n")
CHUNKS = [HEAD, "  ops: {models: [small]}\n", "  qa: {models: [small]}\n"]


async def test_a_file_written_in_two_chunks_is_one_version(tmp_path: Path) -> None:
    """Chunks 0.6 s apart (longer than a poll in all): one new version holding them all."""
    async with running_gateway(tmp_path, POLICY) as gw:
        await asyncio.sleep(1.5)  # the watcher has looked at the folder once
        with (gw.settings.policy_dir / "bundle.yaml").open("w") as file:
            for number, chunk in enumerate(CHUNKS):
                if number:
                    await asyncio.sleep(0.6)
                file.write(chunk)
                file.flush()  # each prefix is a valid policy on its own
        await asyncio.sleep(3.5)  # applied within about 2 s of the last write
        history = await gw.services.policy_versions.history()
    assert [v.version for v in history] == [2, 1]
    assert history[0].bundle["teams"] == {
        "demo": {"models": ["small"]},
        "ops": {"models": ["small"]},
        "qa": {"models": ["small"]},
    }
