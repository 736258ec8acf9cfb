"""Rounding a price sum to nano-USD. Compiled with the limits stage (limits/native.py):
every limited request's estimate rounds its worst-case cost here, and compiled code
calling an interpreted function pays a Python frame each time."""

from __future__ import annotations

from typing import Final

TOKENS_PER_MTOK: Final = 10**6


def nano_of(nano_times_mtok: int) -> int:
    """A sum of tokens x nano-USD per Mtok, rounded once (half to even) to nano-USD."""
    whole, rest = divmod(nano_times_mtok, TOKENS_PER_MTOK)
    if rest * 2 > TOKENS_PER_MTOK or (rest * 2 == TOKENS_PER_MTOK and whole % 2):
        whole += 1
    return whole
