"""`policy check`'s warnings (policy/advice.py): a USD budget does not limit a model with
no known price, so the author hears of it."""

from __future__ import annotations

from pathlib import Path

from gateway.policy.advice import unpriced_under_usd_budgets
from gateway.policy.store import load_policy_dir

BUNDLE = """
providers:
  demo: {type: mock}
  up: {type: openai-compatible, api_base: "https://llm.example.com/v1"}
models:
  small: {deployments: [{provider: demo, model: m}]}
  priced:
    deployments: [{provider: up, model: x}]
    price: {input_per_mtok: 1.0, output_per_mtok: 2.0}
  table: {deployments: [{provider: up, model: gpt-4o}]}
teams:
  all: {models: ["*"], budgets: [{period: month, usd: 10}]}
  tokens_only: {models: [small], budgets: [{period: month, tokens: 10}]}
  priced_only: {models: [priced, table], budgets: [{period: month, usd: 10}]}
  no_models: {models: [], budgets: [{period: day, usd: 1}]}
"""


def test_only_unpriced_models_a_usd_budgeted_team_may_use_are_pointed_out(tmp_path: Path) -> None:
    (tmp_path / "bundle.yaml").write_text(BUNDLE)
    warnings = unpriced_under_usd_budgets(load_policy_dir(tmp_path, {}))
    assert warnings == [
        "team 'all' has a USD budget, but model 'small' (deployment demo/m) has no known "
        "price: its spend counts as $0 against that budget. Set `price:` on the model."
    ]  # gpt-4o is priced from the installed price table; token budgets need no price
