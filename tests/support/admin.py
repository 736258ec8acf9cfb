"""An HTTP client for the admin API, as an admin script would call it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass
class Admin:
    """Calls the admin API with a chosen bearer token (or none); (status, JSON body)."""

    origin: str
    http: aiohttp.ClientSession
    token: str | None

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.http.request(
            method, f"{self.origin}{path}", json=body, headers=headers
        ) as response:
            return response.status, await response.json()
