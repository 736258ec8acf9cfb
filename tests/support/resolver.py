"""A name lookup from a fixed table, for tests of what the gateway does with the answer.

lookup = MapResolver({"imds.test": ["169.254.169.254"], "up.test": ["127.0.0.1"]})
GuardedResolver(rules, lookup=lookup)
"""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult


class MapResolver(AbstractResolver):
    """Answers from `table` (name → addresses), counting its calls; an unknown name fails."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls = 0
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls += 1
        if host not in self.table:
            raise OSError(f"{host}: no such name")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.table[host]
        ]

    async def close(self) -> None:
        self.closed = True
