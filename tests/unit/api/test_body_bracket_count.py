"""A body between 64 KiB and 1 MiB has its brackets counted once, not again by the check."""

from __future__ import annotations

from typing import Any, SupportsIndex

import orjson
import pytest

from gateway.api.body import (
    MAX_DEPTH,
    OFF_LOOP_BYTES,
    WALKED_ON_LOOP_BYTES,
    check_forwardable,
    check_forwardable_soon,
)
from gateway.errors import InvalidRequest


class CountedBytes(bytes):
    """Bytes that tally the scans `bytes.count` makes over them."""

    scans = 0

    def count(
        self,
        sub: Any,
        start: SupportsIndex | None = None,
        end: SupportsIndex | None = None,
    ) -> int:
        type(self).scans += 1
        return super().count(sub, start, end)


def body_of(size: int, brackets: int) -> tuple[bytes, dict[str, Any]]:
    """A body of about `size` bytes holding `brackets` empty lists side by side."""
    lists = ",".join(["[]"] * brackets)
    padding = "x" * (size - 2 * len(lists))
    raw = f'{{"model": "m", "tools": [{lists}], "pad": "{padding}"}}'.encode()
    return raw, orjson.loads(raw)


@pytest.mark.parametrize("brackets", [10, MAX_DEPTH * 2], ids=["few", "many"])
async def test_a_mid_sized_body_is_scanned_for_brackets_once(brackets: int) -> None:
    """64 KiB to 1 MiB: `[` and `{` are counted once each (the thread choice and the check share it)."""
    raw, body = body_of(WALKED_ON_LOOP_BYTES * 2, brackets)
    assert WALKED_ON_LOOP_BYTES < len(raw) < OFF_LOOP_BYTES
    counted = CountedBytes(raw)
    CountedBytes.scans = 0
    await check_forwardable_soon(counted, body)
    assert CountedBytes.scans == 2


@pytest.mark.parametrize("depth", [MAX_DEPTH, MAX_DEPTH + 1])
def test_a_count_passed_in_decides_as_the_check_would(depth: int) -> None:
    """check_forwardable given the body's bracket count refuses exactly what it refuses alone."""
    raw = b'{"tools": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
    body = orjson.loads(raw)
    brackets = raw.count(b"[") + raw.count(b"{")
    outcomes = []
    for given in (None, brackets):
        try:
            check_forwardable(raw, body, None, given)
            outcomes.append("forwarded")
        except InvalidRequest as refused:
            outcomes.append(refused.code or "")
    assert outcomes[0] == outcomes[1]
    assert outcomes[0] == ("forwarded" if depth <= MAX_DEPTH else "nesting_too_deep")
