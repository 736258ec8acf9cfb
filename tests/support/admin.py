"""An HTTP client for the admin API, as an admin script would call it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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


# The policy most admin tests start from: two models, a team with all, a team with both.
ADMIN_POLICY = """\
providers:
  demo: {type: mock}
models:
  small: {deployments: [{provider: demo, model: mock-small}]}
  large: {deployments: [{provider: demo, model: mock-large}]}
teams:
  demo: {models: ["*"]}
  search: {models: [small, large]}
"""


@asynccontextmanager
async def admin_client(origin: str, token: str) -> AsyncIterator[Admin]:
    """An `Admin` with its own HTTP session, closed on exit."""
    async with aiohttp.ClientSession() as http:
        yield Admin(origin, http, token)
