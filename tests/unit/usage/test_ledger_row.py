"""A finished request → its ledger row, and a spool line back → a row (gateway/usage/ledger.py)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.auth.principal import Principal
from gateway.cache.rules import CacheStatus
from gateway.context import Outcome, RequestContext
from gateway.policy.compiled import Deployment
from gateway.usage.ledger import (
    INT32_MAX,
    INT64_MAX,
    MAX_TEXT_CHARS,
    clean_text,
    ledger_row,
    row_from_spool,
)
from gateway.usage.ledger_table import LEDGER_COLUMNS
from gateway.usage.pricing import UNKNOWN_PRICES, PriceSource, UnitPrices, cost_nanousd
from gateway.usage.usage import Usage

PRICES = UnitPrices(
    150_000_000, 600_000_000, 75_000_000, 150_000_000, 600_000_000, PriceSource.POLICY
)
ALICE = Principal("demo", "alice", "app-1", frozenset({"gateway:invoke"}), "iss", 0.0)
DEPLOYMENT = Deployment("openai", "gpt-4o-mini", 1.0, 1, prices=PRICES)


def answered(**changes: object) -> RequestContext:
    ctx = RequestContext(
        request_id="req-1", endpoint="chat", key="k1", started_at_ms=1_700_000_000_000
    )
    ctx.principal, ctx.model, ctx.deployment, ctx.attempts = ALICE, "fast", DEPLOYMENT, 2
    usage = Usage(1000, 200, 300, cache_write_tokens=100, reasoning_tokens=50)
    ctx.usage, ctx.prices, ctx.cost_nanousd = usage, PRICES, cost_nanousd(usage, PRICES)
    ctx.first_byte_s = 0.1234
    for name, value in changes.items():
        setattr(ctx, name, value)
    return ctx


def test_an_answered_request_carries_who_what_tokens_prices_and_cost():
    """Every column is filled from the context; the prices it was charged at travel with it."""
    row = ledger_row(answered(), latency_s=0.5)
    assert tuple(row) == LEDGER_COLUMNS
    assert row == {
        **row,
        "id": "k1",
        "request_id": "req-1",
        "at_ms": 1_700_000_000_000,
        "endpoint": "chat",
        "team": "demo",
        "subject": "alice",
        "client_id": "app-1",
        "model": "fast",
        "provider": "openai",
        "deployment": "openai/gpt-4o-mini",
        "upstream_model": "gpt-4o-mini",
        "stream": False,
        "status": 200,
        "outcome": "ok",
        "error_code": None,
        "input_tokens": 1000,
        "output_tokens": 200,
        "cached_tokens": 300,
        "cache_write_tokens": 100,
        "reasoning_tokens": 50,
        "tokens_estimated": False,
        "price_source": "policy",
        "price_input": 150_000_000,
        "price_output": 600_000_000,
        "price_cached_input": 75_000_000,
        "price_cache_write": 150_000_000,
        "price_reasoning": 600_000_000,
        "attempts": 2,
        "latency_ms": 500,
        "ttft_ms": 123,
        "guardrails": None,
        "cache": None,
    }
    # 600 plain input at 0.15, 300 cached at 0.075, 100 written at 0.15, 200 output at 0.60
    assert row["cost_nanousd"] == 600 * 150 + 300 * 75 + 100 * 150 + 200 * 600
    assert row_from_spool(orjson.loads(orjson.dumps(row))) == row


def test_a_refused_request_has_no_price_and_whatever_is_known():
    """A 401 knows no team, model or deployment: zero tokens, zero cost, price_source none."""
    ctx = RequestContext(request_id="req-2", endpoint="embeddings")
    ctx.end(401, Outcome.REFUSED, "invalid_api_key")
    row = ledger_row(ctx, latency_s=0.0002)
    assert (row["team"], row["subject"], row["model"], row["deployment"]) == (None,) * 4
    assert (row["status"], row["outcome"], row["error_code"]) == (401, "refused", "invalid_api_key")
    assert (row["cost_nanousd"], row["price_source"], row["price_input"]) == (0, "none", 0)
    assert (row["input_tokens"], row["tokens_estimated"], row["ttft_ms"]) == (0, False, None)
    assert row["latency_ms"] == 0 and row["id"] == ctx.key
    assert row_from_spool(orjson.loads(orjson.dumps(row))) == row


def test_an_unknown_price_costs_zero_and_says_unknown():
    """A model with no price anywhere is still counted, priced at 0 and flagged `unknown`."""
    usage = Usage(10, 5, is_estimated=True)
    row = ledger_row(answered(usage=usage, prices=UNKNOWN_PRICES, cost_nanousd=0), 0.1)
    assert (row["price_source"], row["cost_nanousd"], row["input_tokens"]) == ("unknown", 0, 10)
    assert row["tokens_estimated"] is True


def test_counts_beyond_the_columns_are_clamped_not_refused_by_the_database():
    """An upstream reporting 10^12 tokens must not poison a batch on PostgreSQL (int4)."""
    huge = Usage(10**12, 10**12)
    row = ledger_row(answered(usage=huge, cost_nanousd=10**30, attempts=-1), latency_s=10**9)
    assert row["input_tokens"] == row["output_tokens"] == row["latency_ms"] == INT32_MAX
    assert (row["cost_nanousd"], row["attempts"]) == (INT64_MAX, 0)


@pytest.mark.parametrize(
    ("text", "clean"),
    [
        (None, None),
        ("plain", "plain"),
        ("a\x00b", "a\ufffdb"),  # PostgreSQL text cannot hold NUL
        ("\ud800x", "?x"),  # a lone surrogate cannot be encoded at all
        ("é" * 300, "é" * MAX_TEXT_CHARS),
    ],
)
def test_the_callers_text_is_cleaned_and_cut(text, clean):
    assert clean_text(text) == clean


@given(st.text())
def test_clean_text_always_encodes_and_fits(text):
    cleaned = clean_text(text)
    assert cleaned is not None and len(cleaned) <= MAX_TEXT_CHARS and "\x00" not in cleaned
    cleaned.encode("utf-8")
    assert clean_text(cleaned) == cleaned  # idempotent: a spooled row reads back the same


def test_a_model_name_from_the_client_is_cleaned_in_the_row():
    row = ledger_row(answered(model="x\x00" * 500), 0.1)
    assert row["model"] == ("x\ufffd" * 500)[:MAX_TEXT_CHARS]


GOOD = ledger_row(answered(), 0.1)


@pytest.mark.parametrize(
    "damaged",
    [
        None,
        [],
        "text",
        {k: v for k, v in GOOD.items() if k != "cost_nanousd"},  # a column missing
        {**GOOD, "extra": 1},  # a column this ledger does not have
        {**GOOD, "id": None},  # NOT NULL
        {**GOOD, "team": 5},
        {**GOOD, "model": "a\x00"},
        {**GOOD, "stream": 1},  # a bool column with an int
        {**GOOD, "status": True},  # an int column with a bool
        {**GOOD, "status": "200"},
        {**GOOD, "input_tokens": INT32_MAX + 1},
        {**GOOD, "cost_nanousd": INT64_MAX + 1},
        {**GOOD, "cost_nanousd": -1},
        {**GOOD, "latency_ms": 1.5},
    ],
)
def test_a_damaged_spool_line_is_not_a_row(damaged):
    assert row_from_spool(damaged) is None


def test_nullable_columns_may_be_null_in_a_spooled_row():
    row = {**GOOD, "team": None, "ttft_ms": None, "guardrails": None, "cache": "hit"}
    assert row_from_spool(row) == row
    assert row_from_spool({**GOOD, "cost_nanousd": INT64_MAX}) is not None


def test_a_cache_hit_is_free_and_holds_the_tokens_it_saved():
    """cache='hit': cost 0, priced by nothing, no deployment; the token columns hold the
    stored answer's usage. Misses and bypasses say so; no cache policy leaves it null."""
    ctx = RequestContext(request_id="req-2", endpoint="chat", key="k2")
    ctx.principal, ctx.model = ALICE, "fast"
    ctx.cache, ctx.saved_usage = CacheStatus.HIT, Usage(1000, 200)
    row = ledger_row(ctx, latency_s=0.01)
    assert (row["cache"], row["cost_nanousd"], row["price_source"]) == ("hit", 0, "none")
    assert (row["input_tokens"], row["output_tokens"], row["deployment"]) == (1000, 200, None)
    assert row_from_spool(orjson.loads(orjson.dumps(row))) == row
    assert ledger_row(answered(cache=CacheStatus.MISS), 0.1)["cache"] == "miss"
    assert ledger_row(answered(cache=CacheStatus.BYPASS), 0.1)["cache"] == "bypass"
    assert ledger_row(answered(), 0.1)["cache"] is None
