"""The ledger's bounds as pure decisions: the dearest price a policy may set, the cost
it can reach (always within a 64-bit column), and the counts a request is charged."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.policy.candidate import candidate_from_folder
from gateway.policy.errors import PolicyInvalid
from gateway.policy.schema import MAX_PRICE_PER_MTOK
from gateway.usage.ledger import MAX_TEXT_CHARS, clean_identity, clean_text
from gateway.usage.pricing import Price, cost_nanousd, policy_prices
from gateway.usage.usage import MAX_CHARGED_TOKENS, Usage, usage_from_report

INT64_MAX = 2**63 - 1
BUNDLE = """\
providers:
  demo: {type: mock}
models:
  m:
    deployments: [{provider: demo, model: mock-1}]
    price: {PRICE}
teams:
  search: {models: ["*"]}
"""


def problems(tmp_path: Path, price: str) -> list[str]:
    (tmp_path / "bundle.yaml").write_text(BUNDLE.replace("{PRICE}", price))
    try:
        candidate_from_folder(tmp_path, {})
    except PolicyInvalid as invalid:
        return [str(issue) for issue in invalid.issues]
    return []


@pytest.mark.parametrize(
    ("price", "field"),
    [
        ("{input_per_mtok: 1.0e+12, output_per_mtok: 1}", "input_per_mtok"),
        ("{input_per_mtok: 1, output_per_mtok: 100000.5}", "output_per_mtok"),
        (
            "{input_per_mtok: 1, output_per_mtok: 1, cached_input_per_mtok: 1.0e+10}",
            "cached_input_per_mtok",
        ),
        (
            "{input_per_mtok: 1, output_per_mtok: 1, cache_write_per_mtok: 10000000}",
            "cache_write_per_mtok",
        ),
    ],
)
def test_a_price_past_the_bound_is_refused_at_its_line(tmp_path, price, field):
    """`policy check` (and the admin API, the same schema) names the price that is too dear."""
    (found,) = problems(tmp_path, price)
    assert found.startswith(f"{tmp_path}/bundle.yaml:6: models.m.price.{field}: "), found
    assert str(MAX_PRICE_PER_MTOK) in found


def test_the_bound_itself_is_a_valid_price(tmp_path):
    bound = MAX_PRICE_PER_MTOK
    assert problems(tmp_path, f"{{input_per_mtok: {bound}, output_per_mtok: {bound}}}") == []


def test_the_dearest_request_at_the_dearest_price_fits_a_64_bit_column():
    """Every kind of token at its cap, every price at the bound: the cost still fits."""
    bound = float(MAX_PRICE_PER_MTOK)
    prices = policy_prices(Price(bound, bound, bound, bound))
    cap = MAX_CHARGED_TOKENS
    for usage in (Usage(cap, cap), Usage(cap, cap, cap, False, cap, cap)):
        assert 0 < cost_nanousd(usage, prices) <= INT64_MAX


@pytest.mark.parametrize("count", [MAX_CHARGED_TOKENS, MAX_CHARGED_TOKENS + 1, 3_000_000_000])
def test_counts_past_a_ledger_row_are_charged_as_its_cap(count):
    """Every count of a report is capped alike, so tokens and cost agree everywhere."""
    report = {
        "prompt_tokens": count,
        "completion_tokens": count,
        "prompt_tokens_details": {"cached_tokens": count},
        "completion_tokens_details": {"reasoning_tokens": count},
        "cache_creation_input_tokens": count,
    }
    usage = usage_from_report(report)
    cap = MAX_CHARGED_TOKENS
    assert usage == Usage(cap, cap, cap, False, cap, cap)


SHARED = "u" * 256  # two subjects that differ only past the ledger's 256 characters


@pytest.mark.parametrize(
    "subjects",
    [
        (SHARED + "-alice", SHARED + "-bob"),
        ("\ud800" + SHARED, "\udc00" + SHARED),  # lone surrogates: cleaned alike, still apart
        ("x" * 300, "x" * 301),
    ],
)
def test_long_subjects_that_share_their_start_stay_apart(subjects):
    first, second = (clean_identity(subject) for subject in subjects)
    assert first != second
    for cut in (first, second):
        assert cut is not None and len(cut) == MAX_TEXT_CHARS
        assert clean_text(cut, len(cut)) == cut  # what the spool's check accepts


@pytest.mark.parametrize("subject", [None, "", "alice", "é" * MAX_TEXT_CHARS, "a\x00b"])
def test_a_subject_within_the_bound_is_only_cleaned(subject):
    assert clean_identity(subject) == clean_text(subject)


def test_a_cut_subject_is_the_same_every_time():
    """One user's rows group together, across requests and processes."""
    subject = "svc:" + "z" * 400
    cut = clean_identity(subject)
    assert cut == clean_identity(subject) and cut is not None and cut.startswith("svc:zzz")
