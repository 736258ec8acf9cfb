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
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from gateway.usage.usage import Usage

NANO_PER_USD = 10**9
TOKENS_PER_MTOK = 10**6
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
    """Nano-USD per million tokens of each kind; what a ledger row is priced with."""

    input: int
    output: int
    cached_input: int
    cache_write: int
    reasoning: int
    source: PriceSource


UNKNOWN_PRICES = UnitPrices(0, 0, 0, 0, 0, PriceSource.UNKNOWN)


def nano_per_mtok(usd_per_mtok: float | Decimal) -> int:
    """USD per million tokens as written (a float from YAML) → exact nano-USD per Mtok."""
    # repr: the shortest text that reads back as this float, i.e. what was written.
    exact = Decimal(repr(usd_per_mtok)) if isinstance(usd_per_mtok, float) else usd_per_mtok
    exact = Decimal(exact)  # an int is a valid float to the type checker, not to Decimal math
    return int((exact * NANO_PER_USD).to_integral_value(ROUND_HALF_EVEN))


def _per_token_to_mtok(usd_per_token: Any) -> int | None:
    if not isinstance(usd_per_token, int | float) or usd_per_token < 0:
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
    """One entry of litellm's table (per-token USD floats) → our units; None if unpriced."""
    if not isinstance(entry, dict):
        return None
    input_ = _per_token_to_mtok(entry.get("input_cost_per_token"))
    output = _per_token_to_mtok(entry.get("output_cost_per_token"))
    if input_ is None or output is None:
        return None
    cached = _per_token_to_mtok(entry.get("cache_read_input_token_cost"))
    cache_write = _per_token_to_mtok(entry.get("cache_creation_input_token_cost"))
    reasoning = _per_token_to_mtok(entry.get("output_cost_per_reasoning_token"))
    return UnitPrices(
        input=input_,
        output=output,
        cached_input=input_ if cached is None else cached,
        cache_write=input_ if cache_write is None else cache_write,
        reasoning=output if reasoning is None else reasoning,
        source=PriceSource.TABLE,
    )


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
    reasoning ones (OpenAI's convention); each kind is priced at its own rate.
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
    return nano_of(nano_times_mtok)


def nano_of(nano_times_mtok: int) -> int:
    """A sum of tokens x nano-USD per Mtok, rounded once (half to even) to nano-USD."""
    whole, rest = divmod(nano_times_mtok, TOKENS_PER_MTOK)
    if rest * 2 > TOKENS_PER_MTOK or (rest * 2 == TOKENS_PER_MTOK and whole % 2):
        whole += 1
    return whole


def usd_text(nanousd: int) -> str:
    """A cost as the decimal string clients and reports see: nine decimals, exact
    (integer arithmetic: on every whole answer's path, ~10x cheaper than Decimal)."""
    sign = "-" if nanousd < 0 else ""
    whole, nano = divmod(abs(nanousd), NANO_PER_USD)
    return f"{sign}{whole}.{nano:09d}"
