"""Every whole answer tells the caller what it cost (SPEC §2): exact, priced at the
deployment's own price, else its model's, else litellm's bundled table."""

from decimal import Decimal

import pytest

from tests.support.gateway import running_gateway
from tests.support.upstream import MockUpstream

POLICY = """
providers:
  up: {{type: openai-compatible, api_base: "{base}"}}
models:
  priced:
    deployments: [{{provider: up, model: upstream-chat}}]
    price: {{input_per_mtok: 0.15, output_per_mtok: 0.60}}
  own-price:
    deployments:
      - {{provider: up, model: upstream-chat, price: {{input_per_mtok: 3, output_per_mtok: 7.1}}}}
    price: {{input_per_mtok: 0.15, output_per_mtok: 0.60}}
  from-table:
    deployments: [{{provider: up, model: gpt-4o-mini}}]
  unpriced:
    deployments: [{{provider: up, model: no-such-model-anywhere}}]
  embed:
    deployments: [{{provider: up, model: upstream-embed}}]
    price: {{input_per_mtok: 0.02, output_per_mtok: 0}}
teams:
  demo: {{models: ["*"]}}
"""


@pytest.fixture
async def gateway(tmp_path):
    async with (
        MockUpstream("up") as up,
        running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw,
    ):
        yield gw


def expected_usd(input_tokens: int, output_tokens: int, usd_in: str, usd_out: str) -> Decimal:
    per_mtok = input_tokens * Decimal(usd_in) + output_tokens * Decimal(usd_out)
    return (per_mtok / 1_000_000).quantize(Decimal("1e-9"))


@pytest.mark.parametrize(
    ("model", "usd_in", "usd_out"),
    [
        ("priced", "0.15", "0.60"),
        ("own-price", "3", "7.1"),  # the deployment's price wins over its model's
        ("from-table", "0.15", "0.60"),  # litellm's bundled table: gpt-4o-mini
        ("unpriced", "0", "0"),  # unknown everywhere: priced at zero (the ledger flags it)
    ],
)
async def test_a_whole_answer_carries_its_exact_cost(gateway, model, usd_in, usd_out):
    client = await gateway.openai()
    raw = await client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "what does this cost?"}]
    )
    usage = raw.parse().usage
    cost = raw.headers["x-gateway-cost-usd"]
    assert Decimal(cost) == expected_usd(
        usage.prompt_tokens, usage.completion_tokens, usd_in, usd_out
    )
    assert len(cost.split(".")[1]) == 9  # a plain decimal string, never 1e-06
    assert raw.headers["x-gateway-tokens-estimated"] == "false"


async def test_embeddings_carry_their_cost_too(gateway):
    client = await gateway.openai()
    raw = await client.embeddings.with_raw_response.create(model="embed", input="hello")
    usage = raw.parse().usage
    assert Decimal(raw.headers["x-gateway-cost-usd"]) == expected_usd(
        usage.prompt_tokens, 0, "0.02", "0"
    )


async def test_a_refusal_carries_no_cost(gateway, http):
    response = await http.post(f"{gateway.base_url}/chat/completions", json={})
    assert response.status == 401
    assert "x-gateway-cost-usd" not in response.headers
