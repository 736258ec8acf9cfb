"""The month as a FinOps FOCUS 1.3 cost-and-usage CSV (REFERENCE §4); pure, deterministic.

One line per day, team, model, deployment, unit price and token kind, as the
FOCUS AI-billing appendix models tokens: `ConsumedQuantity` in tokens,
`PricingQuantity` in millions of tokens at `ListUnitPrice` USD per million.
The gateway charges list price with no discount or markup, so BilledCost =
EffectiveCost = ListCost = ContractedCost on every line.

Exactness: a line's cost is its tokens times the unit price stored on the ledger rows
(an exact integer in 1e-15 USD), rounded half to even to a nano-USD. The rows'
own costs were each rounded once when they happened, so the lines of one group
can differ from the group's SUM(cost_nanousd) by a few nano-USD: that residual is
added to the group's costliest line (its first, on a tie). So every group's lines
add up to its ledger rows exactly, and the file's total equals the csv/json
report's total to the nano-USD, not just to the cent.

A response-cache hit's tokens were saved, not billed: its lines (cost 0) say
`x_CacheStatus` hit and a ChargeDescription ending "served from the gateway cache, not
billed"; `x_CacheStatus` is miss or bypass for requests under a cache policy, empty
for the rest.

The provider columns name the vendor, by the provider's type (REFERENCE §4.4):
`ServiceProviderName`, `HostProviderName` and `ProviderName` say OpenAI, Microsoft
(azure), Anthropic, Google (gemini), AWS (bedrock), Internal (openai-compatible: a
vLLM or Ollama of our own) or the platform (mock, and refusals that reached no
provider), so two accounts of one vendor are one service provider. `PublisherName`
is the model developer where the type tells it (OpenAI for azure too) and the vendor
where it does not (bedrock and openai-compatible serve many developers' models).
The policy's provider key stays in `ResourceId` (`openai-main/gpt-4o`) and in
`SkuPriceDetails.Provider`; a key whose type no policy version tells is shown as is.
`InvoiceIssuerName` is the platform: it charges the teams back.

Requests are counted once: `x_RequestCount` and `x_ErrorCount` sit on the first
line of their group (0 on its other lines), so summing the column is right.
A group without tokens (refusals) still gets one zero-cost input line, so its
requests are in the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from gateway.one_line import breaking_character
from gateway.usage.csv_cells import csv_bytes
from gateway.usage.nano import TOKENS_PER_MTOK
from gateway.usage.pricing import usd_text
from gateway.usage.report_query import ChargeKey, ChargeSums, TokenKind
from gateway.usage.report_request import MS_PER_DAY, GroupKey, Month, day_label

BILLING_ACCOUNT_ID = "llm-gateway"
PLATFORM_NAME = "LLM Gateway"  # the platform team charges back: it issues the "invoice"
SERVICE_CATEGORY = "AI and Machine Learning"
SERVICE_SUBCATEGORY = "Generative AI"
PRICING_UNIT = "1000000 Tokens"

# A provider type's (service provider and host, publisher): REFERENCE §4.4.
_VENDORS = {
    "openai": ("OpenAI", "OpenAI"),
    "azure": ("Microsoft", "OpenAI"),  # Azure OpenAI: OpenAI's models on Microsoft's hosts
    "anthropic": ("Anthropic", "Anthropic"),
    "gemini": ("Google", "Google"),
    "bedrock": ("AWS", "AWS"),  # many developers' models: the vendor publishes the service
    "openai-compatible": ("Internal", "Internal"),
    "mock": (PLATFORM_NAME, PLATFORM_NAME),
}

METERS = {
    TokenKind.INPUT: "Input Tokens",
    TokenKind.CACHED_INPUT: "Cached Input Tokens",
    TokenKind.CACHE_WRITE: "Cache Write Tokens",
    TokenKind.OUTPUT: "Output Tokens",
    TokenKind.REASONING: "Reasoning Tokens",
}
# SkuPriceDetails properties (PascalCase, shared by every line of one SkuPriceId).
_TOKEN_TYPE = {
    TokenKind.INPUT: {"TokenType": "Input"},
    TokenKind.CACHED_INPUT: {"TokenType": "Input", "CacheAction": "Read"},
    TokenKind.CACHE_WRITE: {"TokenType": "Input", "CacheAction": "Write"},
    TokenKind.OUTPUT: {"TokenType": "Output"},
    TokenKind.REASONING: {"TokenType": "Output", "OutputKind": "Reasoning"},
}
# Custom columns for the keys a FOCUS export may be split by on request.
EXTRA_COLUMNS = {GroupKey.SUBJECT: "x_Subject", GroupKey.CLIENT: "x_ClientId"}

COLUMNS = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "HostProviderName",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",  # deprecated in 1.3 but still required; = ServiceProviderName
    "PublisherName",  # deprecated in 1.3 but still required
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceProviderName",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "Tags",
    "x_ModelAlias",
    "x_PriceSource",
    "x_RequestCount",
    "x_ErrorCount",
    "x_EstimatedTokens",
    "x_CacheStatus",
)
# Amounts and quantities: never defused (csv_cells.py); every other column is text.
NUMERIC_COLUMNS = frozenset(
    {
        "BilledCost",
        "ConsumedQuantity",
        "ContractedCost",
        "ContractedUnitPrice",
        "EffectiveCost",
        "ListCost",
        "ListUnitPrice",
        "PricingQuantity",
        "x_RequestCount",
        "x_ErrorCount",
        "x_EstimatedTokens",
    }
)


def focus_extra_keys(group_by: Sequence[GroupKey]) -> tuple[GroupKey, ...]:
    """The requested keys FOCUS lines are split by beyond their own granularity."""
    return tuple(key for key in group_by if key in EXTRA_COLUMNS)


def _round_half_even(femto_usd: int) -> int:
    """1e-15 USD → nano-USD, half to even (the same rule as `pricing.cost_nanousd`)."""
    whole, rest = divmod(femto_usd, TOKENS_PER_MTOK)
    if rest * 2 > TOKENS_PER_MTOK or (rest * 2 == TOKENS_PER_MTOK and whole % 2):
        whole += 1
    return whole


def line_costs(key: ChargeKey, sums: ChargeSums) -> list[tuple[TokenKind, int]]:
    """The group's lines (token kinds with tokens) and their nano-USD costs, which add up
    to `sums.cost_nanousd` exactly; the rounding residual sits on the costliest line."""
    kinds = [kind for kind in TokenKind if sums.tokens[kind] > 0] or [TokenKind.INPUT]
    exact = [sums.tokens[kind] * key.unit_price(kind) for kind in kinds]
    costs = [_round_half_even(femto) for femto in exact]
    costliest = exact.index(max(exact))
    costs[costliest] += sums.cost_nanousd - sum(costs)
    return list(zip(kinds, costs, strict=True))


def _iso(day_index: int) -> str:
    return f"{day_label(day_index)}T00:00:00Z"


def _mtok(tokens: int) -> str:
    """Tokens as millions, exact, six decimals (8400000 → 8.400000)."""
    return f"{tokens // TOKENS_PER_MTOK}.{tokens % TOKENS_PER_MTOK:06d}"


def _sort_key(key: ChargeKey) -> tuple[Any, ...]:
    def text(value: str | None) -> tuple[int, str]:
        return (0, "") if value is None else (1, value)

    return (
        key.day,
        text(key.team),
        text(key.model),
        text(key.provider),
        text(key.deployment),
        text(key.upstream_model),
        *(text(value) for value in key.extra),
        text(key.cache),
        key.price_source,
        key.price_input,
        key.price_cached_input,
        key.price_cache_write,
        key.price_output,
        key.price_reasoning,
    )


def _json(value: Mapping[str, Any]) -> str:
    """`value` as one line of JSON whose text holds no control, format or line-separator
    character: orjson escapes only C0, so DEL, C1, Cf (bidi, zero-width) and U+2028/U+2029
    are written as JSON `\\uXXXX` escapes here. `csv_bytes` would escape them Python's way
    (`\\x7f`), which JSON cannot read; this way the cell stays JSON for the same text."""
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    if breaking_character(text) is None:
        return text
    return "".join(json.dumps(c)[1:-1] if breaking_character(c) else c for c in text)


def vendors(provider: str | None, provider_types: Mapping[str, str]) -> tuple[str, str]:
    """(service provider, publisher) of a provider key, by its type in `provider_types`:
    the platform when there is no provider (a refusal reached none), the key itself when
    its type is unknown."""
    if provider is None:
        return PLATFORM_NAME, PLATFORM_NAME
    return _VENDORS.get(provider_types.get(provider, ""), (provider, provider))


def _lines(
    month: Month, key: ChargeKey, sums: ChargeSums, provider_types: Mapping[str, str]
) -> list[list[str | int]]:
    vendor, publisher = vendors(key.provider, provider_types)
    resource = key.deployment or key.model or "unknown"
    period_start = _iso(month.start_ms // MS_PER_DAY)
    period_end = _iso(month.end_ms // MS_PER_DAY)  # exclusive, as FOCUS periods are
    tags = {"team": key.team, "model": key.model}
    served = ", served from the gateway cache, not billed" if key.is_cache_hit else ""
    rows: list[list[str | int]] = []
    for position, (kind, cost_nanousd) in enumerate(line_costs(key, sums)):
        unit_price = key.unit_price(kind)
        sku_id = f"{resource}:{kind.value}"
        details = {
            "ModelId": key.upstream_model,
            "Provider": key.provider,
            "PriceSource": key.price_source,
            **_TOKEN_TYPE[kind],
        }
        cost = usd_text(cost_nanousd)
        price = usd_text(unit_price)
        first = position == 0
        rows.append(
            [
                cost,
                BILLING_ACCOUNT_ID,
                PLATFORM_NAME,
                "USD",
                period_end,
                period_start,
                "Usage",
                "",  # ChargeClass: null, not a correction
                f"{METERS[kind]} of {resource}{served}",
                "Usage-Based",
                _iso(key.day + 1),
                _iso(key.day),
                sums.tokens[kind],
                "Tokens",
                cost,
                price,
                cost,
                vendor,  # HostProviderName
                PLATFORM_NAME,  # InvoiceIssuerName
                cost,
                price,
                "Standard",
                _mtok(sums.tokens[kind]),
                PRICING_UNIT,
                vendor,  # ProviderName
                publisher,
                key.deployment or "",
                key.deployment or "",
                "Model Deployment" if key.deployment else "",
                SERVICE_CATEGORY,
                PLATFORM_NAME,
                vendor,  # ServiceProviderName
                SERVICE_SUBCATEGORY,
                sku_id,
                METERS[kind],
                _json({k: v for k, v in details.items() if v is not None}),
                f"{sku_id}:{key.price_source}:{unit_price}",
                key.team or "",
                key.team or "",
                "Team" if key.team else "",
                _json({k: v for k, v in tags.items() if v is not None}),
                key.model or "",
                key.price_source,
                sums.requests if first else 0,
                sums.errors if first else 0,
                sums.estimated[kind],
                key.cache or "",
                *("" if value is None else value for value in key.extra),
            ]
        )
    return rows


def focus_csv(
    month: Month,
    charges: Mapping[ChargeKey, ChargeSums],
    extra: Sequence[GroupKey],
    provider_types: Mapping[str, str] | None = None,
) -> bytes:
    """The FOCUS CSV; `provider_types` ({provider key: type}, provider_types.py) names
    each line's vendor (a key missing from it is shown as is)."""
    types = provider_types or {}
    header = [*COLUMNS, *(EXTRA_COLUMNS[key] for key in extra)]
    rows = (
        line
        for key in sorted(charges, key=_sort_key)
        for line in _lines(month, key, charges[key], types)
    )
    return csv_bytes(header, rows, NUMERIC_COLUMNS)
