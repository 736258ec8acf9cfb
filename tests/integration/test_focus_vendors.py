"""The FOCUS export names vendors, not the policy's provider keys: its provider columns
come from each key's type in the newest policy version that defines it (a provider
removed since included), the same bytes from the CLI and GET /finance/reports/usage."""

from __future__ import annotations

import csv
import io
import os
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.support.gateway import running_gateway
from tests.support.ledger_rows import insert_rows, priced_row, prices
from tests.support.processes import GATEWAY

PROVIDERS = """\
providers:
  demo: {type: mock}
  openai-main: {type: openai, api_key: "${VENDOR_TEST_API_KEY}"}
  openai-backup: {type: openai, api_key: "${VENDOR_TEST_API_KEY}"}
  azure-east: {type: azure, api_base: "https://east.openai.azure.com",
               api_key: "${VENDOR_TEST_API_KEY}", api_version: "2024-10-21"}
  claude: {type: anthropic, api_key: "${VENDOR_TEST_API_KEY}"}
  gem: {type: gemini, api_key: "${VENDOR_TEST_API_KEY}"}
"""
POLICY = (
    PROVIDERS
    + '  old-local: {type: openai-compatible, api_base: "http://10.1.2.3:8000/v1"}\n'
    + "models:\n  small: {deployments: [{provider: demo, model: mock-small}]}\n"
    + 'teams:\n  demo: {models: ["*"]}\n'
)
# (provider key, ServiceProviderName = HostProviderName = ProviderName, PublisherName)
EXPECTED = [
    ("openai-main", "OpenAI", "OpenAI"),
    ("openai-backup", "OpenAI", "OpenAI"),
    ("azure-east", "Microsoft", "OpenAI"),
    ("claude", "Anthropic", "Anthropic"),
    ("gem", "Google", "Google"),
    ("old-local", "Internal", "Internal"),  # removed in version 2: version 1 tells its type
    ("demo", "LLM Gateway", "LLM Gateway"),
    ("ghost", "ghost", "ghost"),  # no version defines it: shown as is
]


def _report_cli(tmp_path: Path, database_url: str) -> bytes:
    done = subprocess.run(
        [GATEWAY, "report", "usage", "--month", "2026-01", "--format", "focus"],
        cwd=tmp_path,
        env={**os.environ, "GATEWAY_DATABASE_URL": database_url},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_focus_provider_columns_name_the_vendor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each provider key's lines say its vendor; the key stays in ResourceId; a refusal
    is the platform's; CLI and API bytes are equal; costs are unchanged."""
    monkeypatch.setenv("VENDOR_TEST_API_KEY", "sk-test")
    async with running_gateway(tmp_path, POLICY) as gw, aiohttp.ClientSession() as http:
        versions = gw.services.policy_versions
        running = await versions.current()
        assert running is not None
        without_old = {
            **running.bundle,
            "providers": {k: v for k, v in running.bundle["providers"].items() if k != "old-local"},
        }
        await versions.apply(without_old, author="t", reason="", base_version=running.version)
        rows = [
            priced_row(
                prices(1_000_000_000, 2_000_000_000),
                provider=key,
                deployment=f"{key}/m",
                input_tokens=1000,
            )
            for key, _, _ in EXPECTED
        ]
        refusal = priced_row(
            prices(0, 0), provider=None, deployment=None, upstream_model=None, status=403
        )
        await insert_rows(gw.services.engine, [*rows, refusal])
        token = await gw.token(scopes=["gateway:finance"])
        async with http.get(
            f"{gw.origin}/finance/reports/usage?month=2026-01&format=focus",
            headers={"authorization": f"Bearer {token}"},
        ) as answer:
            assert answer.status == 200
            body = await answer.read()
        cli_bytes = _report_cli(tmp_path, gw.settings.database_url)
    assert cli_bytes == body
    lines = list(csv.DictReader(io.StringIO(body.decode())))
    by_resource = {line["ResourceId"]: line for line in lines}
    for key, vendor, publisher in EXPECTED:
        line = by_resource[f"{key}/m"]
        named = (line["ServiceProviderName"], line["HostProviderName"], line["ProviderName"])
        assert named == (vendor, vendor, vendor), (key, named)
        assert line["PublisherName"] == publisher, key
        assert line["InvoiceIssuerName"] == "LLM Gateway"
        assert line["BilledCost"] == "0.001000000", key
    refused = by_resource[""]
    assert refused["ServiceProviderName"] == refused["PublisherName"] == "LLM Gateway"
