"""Every section of SPEC §4 is understood; cross-references are checked."""

import re
from pathlib import Path

import pytest

from gateway.policy.errors import PolicyInvalid
from gateway.policy.store import load_policy_dir

SPEC_EXAMPLE = """\
providers:
  openai-main: {type: openai, api_base: "https://api.openai.com/v1", api_key: "${OPENAI_API_KEY}"}
  azure-east:  {type: azure, api_base: "https://NAME.openai.azure.com", api_key: "${AZURE_KEY}", api_version: "2024-10-21"}
  claude:      {type: anthropic, api_key: "${ANTHROPIC_API_KEY}"}
  local:       {type: openai-compatible, api_base: "http://vllm:8000/v1"}
  demo:        {type: mock}
models:
  gpt-4o:
    deployments:
      - {provider: openai-main, model: gpt-4o-2024-08-06, weight: 3}
      - {provider: local, model: llama-3.1-70b, priority: 2}
    price: {input_per_mtok: 2.50, output_per_mtok: 10.00}
routing: {timeout_s: 60, attempt_timeout_s: 20, retries: 2, cooldown_s: 30, failure_threshold: 3}
auth:
  issuers:
    - {issuer: "https://idp.example.com/", audience: llm-gateway,
       jwks_uri: "https://idp.example.com/keys", team_claim: team}
teams:
  search:
    clients: [search-backend]
    models: [gpt-4o]
    budgets:
      - {period: month, tokens: 50000000}
      - {period: month, usd: 2000}
      - {period: day, tokens: 2000000}
    limits: {rpm: 600, tpm: 200000, concurrency: 20}
    per_user: {rpm: 60, tokens_per_day: 500000}
    guardrails: [baseline]
guardrails:
  baseline:
    input:
      - {detector: secrets, action: block}
      - {detector: email, action: redact}
      - {pattern: "(?i)ignore (all )?previous instructions", name: injection, action: flag}
      - {detector: credit_card, action: redact}
    output:
      - {detector: credit_card, action: redact}
    max_input_tokens: 32000
"""
ENV = {"OPENAI_API_KEY": "a", "AZURE_KEY": "b", "ANTHROPIC_API_KEY": "c"}


def load(tmp_path: Path, text: str):
    (tmp_path / "bundle.yaml").write_text(text)
    return load_policy_dir(tmp_path, ENV)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(PolicyInvalid) as caught:
        load(tmp_path, text)
    return [str(i) for i in caught.value.issues]


def test_the_spec_example_loads(tmp_path):
    policy = load(tmp_path, SPEC_EXAMPLE)
    search = policy.teams["search"]
    assert [b.period for b in search.budgets] == ["month", "month", "day"]
    assert search.limits.rpm == 600
    assert policy.team_of_client["search-backend"] == "search"
    assert policy.issuers[0].algorithms == ["RS256", "PS256", "ES256", "EdDSA"]
    assert policy.guardrails["baseline"].max_input_tokens == 32000


def test_a_team_naming_a_missing_guardrail_profile(tmp_path):
    text = SPEC_EXAMPLE.replace("guardrails: [baseline]", "guardrails: [strict]")
    assert problems(tmp_path, text) == [
        f"{tmp_path}/bundle.yaml:28: teams.search.guardrails[0]: "
        "unknown guardrail profile 'strict' (not in guardrails)"
    ]


@pytest.mark.parametrize("algorithm", ["HS256", "none"])
def test_hmac_and_none_are_refused_for_external_issuers(tmp_path, algorithm):
    text = SPEC_EXAMPLE.replace(
        "team_claim: team}", f"team_claim: team, algorithms: [{algorithm}]}}"
    )
    (found,) = problems(tmp_path, text)
    assert found.startswith(f"{tmp_path}/bundle.yaml:17: auth.issuers[0].algorithms:")
    assert "never none or HS*" in found


def test_a_budget_needs_exactly_one_quantity(tmp_path):
    text = SPEC_EXAMPLE.replace(
        "{period: day, tokens: 2000000}", "{period: day, tokens: 1, usd: 1}"
    )
    (found,) = problems(tmp_path, text)
    assert "teams.search.budgets[2]" in found and "exactly one of tokens or usd" in found


LARGEST = [  # (the SPEC example's text, the largest value in its place, the field)
    ("rpm: 600,", "rpm: 10**15,", "limits.rpm"),
    ("tpm: 200000,", "tpm: 10**15,", "limits.tpm"),
    ("{rpm: 60,", "{rpm: 10**15,", "per_user.rpm"),
    ("guardrails: [baseline]\n", "guardrails: [baseline]\n    max_tokens_default: 1048576\n",
     "max_tokens_default"),
]  # fmt: skip


def _written(text: str) -> str:
    """`10**N` in LARGEST stands for the integer's digits."""
    return re.sub(r"10\*\*(\d+)", lambda m: "1" + "0" * int(m[1]), text)


@pytest.mark.parametrize(("before", "largest", "field"), LARGEST)
def test_rates_and_the_default_allowance_are_bounded(tmp_path, before, largest, field):
    """The largest value loads; one more is a located error naming the bound (Redis's
    Lua counts rates in doubles; a cap past 1,048,576 is no request's)."""
    assert before in SPEC_EXAMPLE
    load(tmp_path, SPEC_EXAMPLE.replace(before, _written(largest)))
    one_more = re.sub(r"(\d+)(\D*)$", lambda m: f"{int(m[1]) + 1}{m[2]}", _written(largest))
    (found,) = problems(tmp_path, SPEC_EXAMPLE.replace(before, one_more))
    bound = re.search(r"(\d+)\D*$", _written(largest))[1]  # type: ignore[index]
    assert f"teams.search.{field}: Input should be less than or equal to {bound}" in found


def test_budgets_and_concurrency_take_any_64_bit_size(tmp_path):
    """ "No limit in practice" written as a huge number is accepted (Redis only compares
    budgets and concurrency: any size is exact enough)."""
    text = (
        SPEC_EXAMPLE.replace("{period: month, usd: 2000}", "{period: month, usd: 1.0e+300}")
        .replace("{period: day, tokens: 2000000}", "{period: day, tokens: 9223372036854775807}")
        .replace("concurrency: 20}", "concurrency: 9223372036854775807}")
    )
    team = load(tmp_path, text).teams["search"]
    assert team.budgets[1].usd == 1e300 and team.budgets[2].tokens == 2**63 - 1


def test_leeway_is_capped_at_60_seconds(tmp_path):
    text = SPEC_EXAMPLE.replace("team_claim: team}", "team_claim: team, leeway_s: 300}")
    (found,) = problems(tmp_path, text)
    assert "auth.issuers[0].leeway_s" in found


def test_a_client_in_two_teams(tmp_path):
    text = SPEC_EXAMPLE.replace(
        "teams:\n  search:", "teams:\n  other: {clients: [search-backend]}\n  search:"
    )
    (found,) = problems(tmp_path, text)
    assert (
        "teams.search.clients[0]: client 'search-backend' already belongs to team 'other'" in found
    )


def test_a_bad_guardrail_pattern_and_an_unknown_timezone(tmp_path):
    text = SPEC_EXAMPLE.replace('"(?i)ignore (all )?previous instructions"', '"(unclosed"')
    text += "timezone: Mars/Olympus\n"
    found = problems(tmp_path, text)
    assert any("guardrails.baseline.input[2]" in f and "regular expression" in f for f in found)
    assert any(f.endswith("timezone: Value error, unknown timezone 'Mars/Olympus'") for f in found)


@pytest.mark.parametrize(
    "second", ["{period: day, tokens: 5000000}", "{period: day, tokens: 2000000}"]
)
def test_a_team_has_one_budget_per_period_and_unit(tmp_path, second):
    """Two day token budgets were one counter charged twice per request (a probe)."""
    text = SPEC_EXAMPLE.replace(
        "{period: day, tokens: 2000000}", "{period: day, tokens: 2000000}\n      - " + second
    )
    (found,) = problems(tmp_path, text)
    assert "teams.search.budgets" in found
    assert "budgets[2] and budgets[3] are both day tokens budgets" in found


def test_a_token_and_a_usd_budget_of_one_period_are_two_budgets(tmp_path):
    text = SPEC_EXAMPLE.replace(
        "{period: day, tokens: 2000000}",
        "{period: day, tokens: 2000000}\n      - {period: day, usd: 5}",
    )
    periods = [(b.period, b.tokens is None) for b in load(tmp_path, text).teams["search"].budgets]
    assert periods.count(("day", True)) == 1 and periods.count(("day", False)) == 1
