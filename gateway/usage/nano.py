"""Rounding a price sum to nano-USD, and a USD amount in it. Compiled with the limits
stage (limits/native.py): every limited request's estimate rounds its worst-case cost
here, and compiled code calling an interpreted function pays a Python frame each time."""

from __future__ import annotations

from decimal import Decimal
from typing import Final

TOKENS_PER_MTOK: Final = 10**6
NANO_PER_USD: Final = 10**9


def usd_to_nano(usd: float) -> int:
    """A USD amount as written in a policy (`repr` of the float: 0.1 is 0.1, not the
    binary fraction) in nano-USD, the ledger's unit, rounded down."""
    return int(Decimal(repr(usd)) * NANO_PER_USD)


def nano_of(nano_times_mtok: int) -> int:
    """A sum of tokens x nano-USD per Mtok, rounded once (half to even) to nano-USD."""
    whole, rest = divmod(nano_times_mtok, TOKENS_PER_MTOK)
    if rest * 2 > TOKENS_PER_MTOK or (rest * 2 == TOKENS_PER_MTOK and whole % 2):
        whole += 1
    return whole
