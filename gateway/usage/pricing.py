"""What a request cost: unit prices for a deployment, and the exact cost of a usage.

Money is integer nano-USD (1e-9 USD) from the price to the ledger's sum, so sums
are exact on every database. The one rounding: a request's cost is rounded once,
half to even, to a whole nano-USD (`cost_nanousd`). Prices are kept as nano-USD per
million tokens, exact for any price written with up to nine decimals.

Where a price comes from, first match wins: the deployment's own `price`, its
model's `price` (both already folded into `Deployment.price` by the compiler),
then litellm's bundled price table (read from the installed wheel's JSON file,
never the network and never `import litellm`), else unknown: priced at zero and
flagged, so a report lists it instead of silently dropping it.

A table price is what the provider bills, as litellm's own cost code reads the table
(`generic_cost_per_token`): at the service tier the answer reports (`*_priority`,
`*_flex`... keys, else the standard ones), the whole request at the higher rates once
its prompt passes a threshold (`*_above_200k_tokens`), audio tokens at their own
rates. That reading happens once per table entry (`table_rates.py`); a request picks
its prices with `charged_prices`. A policy `price` has one rate per kind: audio tokens
are input or output tokens there, and every tier pays it.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from gateway.usage.nano import TOKENS_PER_MTOK, nano_of
from gateway.usage.table_rates import Rates, rates_at, thresholds
from gateway.usage.usage import Usage

NANO_PER_USD = 10**9
PRICE_TABLE_FILE = "model_prices_and_context_window_backup.json"


@dataclass(frozen=True, slots=True)
class Price:
    """A policy's `price` as written: USD per million tokens."""

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None


class PriceSource(StrEnum):
    POLICY = "policy"  # the policy's `price` for the deployment or its model
    TABLE = "table"  # litellm's bundled price table
    UNKNOWN = "unknown"  # no price anywhere: cost 0, flagged in reports
    NONE = "none"  # nothing answered (a refusal, an upstream failure): nothing to price


@dataclass(frozen=True, slots=True)
class UnitPrices:
    """Nano-USD per million tokens of each kind; what a ledger row is priced with.

    `input_audio` and `output_audio` None: audio tokens cost what text tokens do.
    `tiers`: the table's other prices for this deployment (service tiers, long
    prompts), None when it has none; `charged_prices` picks from them."""

    input: int
    output: int
    cached_input: int
    cache_write: int
    reasoning: int
    source: PriceSource
    input_audio: int | None = None
    output_audio: int | None = None
    tiers: PriceTiers | None = None


# One set of prices per prompt-size step: (threshold, the prices once a prompt has more
# tokens than it), thresholds ascending.
Steps = tuple[tuple[int, UnitPrices], ...]


@dataclass(frozen=True, slots=True)
class PriceTiers:
    """A table entry's prices besides its standard ones, worked out once (table_rates.py).

    `above`: the standard tier's steps past prompt-size thresholds. `by_tier`: each
    service tier (by its table key suffix: flex, balanced, priority, ultrafast) that
    prices otherwise, with its base prices and its own steps."""

    above: Steps
    by_tier: tuple[tuple[str, UnitPrices, Steps], ...]

    @property
    def least_threshold(self) -> int | None:
        """The smallest prompt size past which some tier's prices step up; None: none."""
        thresholds = [t for t, _ in self.above]
        thresholds += [t for _, _, steps in self.by_tier for t, _ in steps]
        return min(thresholds, default=None)


UNKNOWN_PRICES = UnitPrices(0, 0, 0, 0, 0, PriceSource.UNKNOWN)

# An answer's `service_tier` → the table's key suffix for it (litellm's mapping: `fast`
# is billed as priority). Any other (`default`, `auto`, `scale`, none) is standard.
TIER_KEY_SUFFIXES = {
    "flex": "flex",
    "balanced": "balanced",
    "priority": "priority",
    "fast": "priority",
    "ultrafast": "ultrafast",
}


def tier_suffix(service_tier: object) -> str:
    """The table's key suffix for an answer's (or a request's) tier; "" for standard."""
    if not isinstance(service_tier, str):
        return ""
    return TIER_KEY_SUFFIXES.get(service_tier.lower(), "")


def charged_prices(prices: UnitPrices, service_tier: object, prompt_tokens: int) -> UnitPrices:
    """What a usage of `prompt_tokens` input tokens served at `service_tier` is charged
    at: the tier's prices (standard when the table has none for it), stepped up for the
    whole request once the prompt is past a threshold. Policy prices are returned as is."""
    tiers = prices.tiers
    if tiers is None:  # policy prices; table entries with one price
        return prices
    chosen, steps = prices, tiers.above
    suffix = tier_suffix(service_tier)
    if suffix:
        for name, base, own_steps in tiers.by_tier:
            if name == suffix:
                chosen, steps = base, own_steps
                break
    for threshold, stepped in steps:
        if prompt_tokens <= threshold:
            break
        chosen = stepped
    return chosen


def nano_per_mtok(usd_per_mtok: float | Decimal) -> int:
    """USD per million tokens as written (a float from YAML) → exact nano-USD per Mtok."""
    # repr: the shortest text that reads back as this float, i.e. what was written.
    exact = Decimal(repr(usd_per_mtok)) if isinstance(usd_per_mtok, float) else usd_per_mtok
    exact = Decimal(exact)  # an int is a valid float to the type checker, not to Decimal math
    return int((exact * NANO_PER_USD).to_integral_value(ROUND_HALF_EVEN))


def per_token_to_mtok(usd_per_token: Any) -> int | None:
    """A table rate (USD per token, a JSON number) → nano-USD per Mtok; None if no rate."""
    if isinstance(usd_per_token, bool) or not isinstance(usd_per_token, int | float):
        return None
    if not usd_per_token >= 0:  # negative, or NaN
        return None
    return nano_per_mtok(Decimal(repr(float(usd_per_token))) * TOKENS_PER_MTOK)


def policy_prices(price: Price) -> UnitPrices:
    input_ = nano_per_mtok(price.input_per_mtok)
    output = nano_per_mtok(price.output_per_mtok)
    cached = price.cached_input_per_mtok
    cache_write = price.cache_write_per_mtok
    return UnitPrices(
        input=input_,
        output=output,
        cached_input=input_ if cached is None else nano_per_mtok(cached),
        cache_write=input_ if cache_write is None else nano_per_mtok(cache_write),
        reasoning=output,  # reasoning tokens are output tokens unless a table says otherwise
        source=PriceSource.POLICY,
    )


def table_prices(entry: Any) -> UnitPrices | None:
    """One entry of litellm's table (per-token USD floats) → our units, its service
    tiers and long-prompt steps included; None if unpriced."""
    if not isinstance(entry, dict):
        return None
    standard = _table_prices_at(entry, "", 0)
    if standard is None:
        return None
    above = _steps(entry, "", standard)
    by_tier = []
    for suffix in sorted(set(TIER_KEY_SUFFIXES.values())):
        base = _table_prices_at(entry, suffix, 0) or standard
        steps = _steps(entry, suffix, base)
        if base != standard or steps != above:
            by_tier.append((suffix, base, steps))
    if not above and not by_tier:
        return standard
    return replace(standard, tiers=PriceTiers(above, tuple(by_tier)))


def _table_prices_at(entry: dict[str, Any], suffix: str, prompt_tokens: int) -> UnitPrices | None:
    rates = rates_at(entry, suffix, prompt_tokens, per_token_to_mtok)
    return None if rates is None else _unit_prices(rates)


def _unit_prices(rates: Rates) -> UnitPrices:
    return UnitPrices(
        input=rates.input,
        output=rates.output,
        cached_input=rates.cached_input,
        cache_write=rates.cache_write,
        reasoning=rates.reasoning,
        source=PriceSource.TABLE,
        # None when the same as text: most entries price no audio
        input_audio=None if rates.input_audio == rates.input else rates.input_audio,
        output_audio=None if rates.output_audio == rates.output else rates.output_audio,
    )


def _steps(entry: dict[str, Any], suffix: str, base: UnitPrices) -> Steps:
    """A tier's prices past each threshold its keys name, where they differ."""
    steps: list[tuple[int, UnitPrices]] = []
    last = base
    for threshold in thresholds(entry, suffix):
        stepped = _table_prices_at(entry, suffix, threshold + 1) or last
        if stepped != last:
            steps.append((threshold, stepped))
            last = stepped
    return tuple(steps)


class PriceTable:
    """litellm's bundled table, loaded once on first use (about 20 ms, off the hot path
    when `load()` is called at start), then plain dict lookups."""

    def __init__(self, entries: dict[str, Any] | None = None) -> None:
        self._entries = entries
        self._lock = threading.Lock()
        self._found: dict[tuple[str, str], UnitPrices | None] = {}

    def load(self) -> None:
        if self._entries is None:
            with self._lock:
                if self._entries is None:
                    self._entries = _read_bundled_table()

    def lookup(self, model: str, provider_type: str = "") -> UnitPrices | None:
        key = (model, provider_type)
        if key in self._found:
            return self._found[key]
        self.load()
        assert self._entries is not None
        found = None
        for name in _candidate_names(model, provider_type):
            found = table_prices(self._entries.get(name))
            if found is not None:
                break
        self._found[key] = found
        return found


def _candidate_names(model: str, provider_type: str) -> list[str]:
    """The table's keys for a model: `provider/model` first (azure/gpt-4o), then bare."""
    names = [model]
    if provider_type and provider_type not in ("mock", "openai-compatible"):
        names.insert(0, f"{provider_type}/{model}")
    return names


def _read_bundled_table() -> dict[str, Any]:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}  # no table installed: every unpriced model is `unknown`
    path = Path(next(iter(spec.submodule_search_locations))) / PRICE_TABLE_FILE
    try:
        table = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return table if isinstance(table, dict) else {}


# The table bundled with the installed litellm: read-only, loaded on first lookup.
BUNDLED_TABLE = PriceTable()


def deployment_prices(
    price: Price | None, model: str, provider_type: str, table: PriceTable = BUNDLED_TABLE
) -> UnitPrices:
    """What a request served by this deployment is charged at (at policy compile time)."""
    if price is not None:
        return policy_prices(price)
    return table.lookup(model, provider_type) or UNKNOWN_PRICES


def cost_nanousd(usage: Usage, prices: UnitPrices) -> int:
    """Exact cost, rounded once (half to even) to a whole nano-USD.

    Input tokens include the cached and cache-written ones, output tokens the
    reasoning ones (OpenAI's convention); each kind is priced at its own rate. Audio
    tokens are of the uncached input and of the non-reasoning output (as litellm
    prices them), at their own rates. `prices`: `charged_prices` of the usage.
    """
    cached = min(usage.cached_tokens, usage.input_tokens)
    written = min(usage.cache_write_tokens, usage.input_tokens - cached)
    plain_input = usage.input_tokens - cached - written
    reasoning = min(usage.reasoning_tokens, usage.output_tokens)
    plain_output = usage.output_tokens - reasoning
    nano_times_mtok = (
        plain_input * prices.input
        + cached * prices.cached_input
        + written * prices.cache_write
        + plain_output * prices.output
        + reasoning * prices.reasoning
    )
    if usage.input_audio_tokens or usage.output_audio_tokens:  # rare: audio models
        nano_times_mtok += _audio_surcharge(usage, prices, plain_input, plain_output)
    return nano_of(nano_times_mtok)


def _audio_surcharge(usage: Usage, prices: UnitPrices, plain_input: int, plain_output: int) -> int:
    """What audio tokens cost beyond the text rate they were summed at (may be < 0)."""
    heard = min(usage.input_audio_tokens, plain_input)
    spoken = min(usage.output_audio_tokens, plain_output)
    input_audio = prices.input if prices.input_audio is None else prices.input_audio
    output_audio = prices.output if prices.output_audio is None else prices.output_audio
    return heard * (input_audio - prices.input) + spoken * (output_audio - prices.output)


def usd_text(nanousd: int) -> str:
    """A cost as the decimal string clients and reports see: nine decimals, exact
    (integer arithmetic: on every whole answer's path, ~10x cheaper than Decimal)."""
    sign = "-" if nanousd < 0 else ""
    whole, nano = divmod(abs(nanousd), NANO_PER_USD)
    return f"{sign}{whole}.{nano:09d}"
