"""How litellm's price table prices a request: which of an entry's keys apply at a
service tier and a prompt size; pure, no I/O, never `import litellm`.

Follows litellm's own cost code (`litellm_core_utils/llm_cost_calc/utils.py`,
`generic_cost_per_token` and `_get_token_base_cost`), key for key:

- A tier's rate is its suffixed key (`input_cost_per_token_priority`), else the
  standard one. Cache rates missing at the tier fall back to the standard cache
  key, then to the (tier's) input rate.
- Past a threshold (`*_above_200k_tokens`, the tier's own `*_above_200k_tokens_priority`
  first), the whole request is billed at the higher rates: input, output, cache read
  and cache write, each keeping the rate below when the step names none; the highest
  threshold the prompt passes wins (strictly more tokens than it).
- Reasoning: the tier's reasoning key, else the tier's output rate when the tier has
  an output key of its own, else the standard reasoning key, else the output rate.
- Audio input: `input_cost_per_audio_token` (the tier's, past its own thresholds),
  else the input rate; audio output: `output_cost_per_audio_token`, else the output rate.

Not followed (no provider type of ours reaches them, or the usage says nothing of
them): `tiered_pricing` lists, `off_peak_pricing` hours, xAI's inclusive thresholds,
per-TTL cache-write rates, cached audio and image or video token rates.

Rates are integers: nano-USD per million tokens (`pricing.per_token_to_mtok`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# litellm's `_SERVICE_TIER_SUFFIXES` (every ServiceTier value, longest first: `_ultrafast`
# before `_fast`): a key with one falls back to the key without it.
ALL_TIER_SUFFIXES = ("_ultrafast", "_priority", "_balanced", "_flex", "_auto", "_fast")
# Threshold keys with these suffixes belong to a tier or to batches: not the standard's.
NON_STANDARD_SUFFIXES = (*ALL_TIER_SUFFIXES, "_batches")
THRESHOLD_PREFIXES = tuple(
    f"{prefix}_above_"
    for prefix in (
        "input_cost_per_token",
        "output_cost_per_token",
        "cache_read_input_token_cost",
        "cache_creation_input_token_cost",
    )
)
AUDIO_INPUT_KEY = "input_cost_per_audio_token"


@dataclass(frozen=True, slots=True)
class Rates:
    """One tier's rates at one prompt size, nano-USD per Mtok."""

    input: int
    output: int
    cached_input: int
    cache_write: int
    reasoning: int
    input_audio: int
    output_audio: int


ToMtok = Callable[[Any], "int | None"]


def rates_at(
    entry: Mapping[str, Any], suffix: str, prompt_tokens: int, to_mtok: ToMtok
) -> Rates | None:
    """The rates of a request served at tier `suffix` ("" standard, "priority", ...)
    whose prompt has `prompt_tokens`; None when the entry has no input or output rate."""
    tier = f"_{suffix}" if suffix else ""

    def rate(key: str, default: int | None = None) -> int | None:
        found = _rate(entry, key, to_mtok)
        return default if found is None else found

    def rate_or(key: str, default: int) -> int:
        found = _rate(entry, key, to_mtok)
        return default if found is None else found

    input_ = rate(f"input_cost_per_token{tier}")
    output = rate(f"output_cost_per_token{tier}")
    if input_ is None or output is None:
        return None
    cache_read = rate(f"cache_read_input_token_cost{tier}")
    cache_write = rate(f"cache_creation_input_token_cost{tier}")
    for text in _crossed(entry, tier, prompt_tokens):  # ascending: the highest applies last
        input_ = rate_or(f"input_cost_per_token_above_{text}_tokens{tier}", input_)
        output = rate_or(f"output_cost_per_token_above_{text}_tokens{tier}", output)
        cache_write = rate(
            f"cache_creation_input_token_cost_above_{text}_tokens{tier}", cache_write
        )
        cache_read = rate(f"cache_read_input_token_cost_above_{text}_tokens{tier}", cache_read)
    return Rates(
        input=input_,
        output=output,
        cached_input=input_ if cache_read is None else cache_read,
        cache_write=input_ if cache_write is None else cache_write,
        reasoning=_reasoning_rate(entry, tier, output, to_mtok),
        input_audio=_audio_input_rate(entry, tier, prompt_tokens, input_, to_mtok),
        output_audio=rate_or("output_cost_per_audio_token", output),
    )


def thresholds(entry: Mapping[str, Any], suffix: str) -> list[int]:
    """Every prompt size past which tier `suffix`'s rates may change, ascending."""
    tier = f"_{suffix}" if suffix else ""
    found = {int(threshold) for threshold, _ in _threshold_keys(entry, tier)}
    for key in _audio_threshold_keys(entry, tier):
        found.add(int(_key_threshold(key)))
    return sorted(found)


def _rate(entry: Mapping[str, Any], key: str, to_mtok: ToMtok) -> int | None:
    """litellm's `get_cost_per_unit(..., default_value=None)`: the key's rate; a key
    absent with a tier suffix falls back to the key without it."""
    value = entry.get(key)
    if value is None:
        for suffix in ALL_TIER_SUFFIXES:
            if suffix in key:
                value = entry.get(key.replace(suffix, ""))
                break
    return to_mtok(_number(value))


def _number(value: Any) -> Any:
    """A rate as litellm reads one: numbers, and numbers written as strings."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return value


def _parse_threshold(text: str) -> float:
    return float(text.replace("k", "")) * (1000 if "k" in text else 1)


def _key_threshold(key: str) -> float:
    """`..._above_200k_tokens...` → 200000.0 (raises ValueError for none)."""
    return _parse_threshold(key.rsplit("_above_", 1)[1].split("_tokens")[0])


def _threshold_keys(entry: Mapping[str, Any], tier: str) -> list[tuple[float, str]]:
    """(threshold, its text) of each threshold key that counts at `tier` (standard
    keys, and the tier's own), as litellm collects them."""
    found = []
    for key, value in entry.items():
        if value is None or not key.startswith(THRESHOLD_PREFIXES) or "_tokens" not in key:
            continue
        if key.endswith(NON_STANDARD_SUFFIXES) and not (tier and key.endswith(tier)):
            continue
        text = key.rsplit("_above_", 1)[1].split("_tokens")[0]
        try:
            found.append((_parse_threshold(text), text))
        except ValueError:
            continue
    return sorted(set(found))


def _crossed(entry: Mapping[str, Any], tier: str, prompt_tokens: int) -> list[str]:
    """The texts of the thresholds the prompt passes (strictly more tokens), ascending."""
    return [text for t, text in _threshold_keys(entry, tier) if prompt_tokens > t]


def _reasoning_rate(entry: Mapping[str, Any], tier: str, output: int, to_mtok: ToMtok) -> int:
    """litellm's `_resolve_reasoning_token_cost`."""
    tier_key = f"output_cost_per_reasoning_token{tier}"
    if entry.get(tier_key) is not None:
        found = to_mtok(_number(entry.get(tier_key)))
        if found is not None:
            return found
    if tier and entry.get(f"output_cost_per_token{tier}") is not None:
        return output
    standard = to_mtok(_number(entry.get("output_cost_per_reasoning_token")))
    return output if standard is None else standard


def _audio_threshold_keys(entry: Mapping[str, Any], tier: str) -> list[str]:
    ends = ("_tokens", f"_tokens{tier}")
    keys = []
    for key, value in entry.items():
        if value is None or not key.startswith(f"{AUDIO_INPUT_KEY}_above_"):
            continue
        if key.endswith(ends):
            try:
                _key_threshold(key)
            except ValueError:
                continue
            keys.append(key)
    return keys


def _audio_input_rate(
    entry: Mapping[str, Any], tier: str, prompt_tokens: int, input_: int, to_mtok: ToMtok
) -> int:
    """litellm's `_modality_token_cost` for audio input: the audio key (the tier's, past
    the highest of its own thresholds the prompt passes), else the input rate."""
    key = f"{AUDIO_INPUT_KEY}{tier}"
    crossed = [k for k in _audio_threshold_keys(entry, tier) if prompt_tokens > _key_threshold(k)]
    if crossed:
        highest = max(crossed, key=_key_threshold)
        key = f"{highest.removesuffix(tier) if tier else highest}{tier}"
    standard = key.removesuffix(tier) if tier else key
    if entry.get(key) is None and entry.get(standard) is None:
        return input_
    found = _rate(entry, key, to_mtok)
    return 0 if found is None else found  # litellm's calculate_cost_component: 0
