"""A bounded chat load spread over gateway replicas, as a load balancer in front of them
would send it: round robin over the replicas in the fleet, and a request that met a
replica going away (connection refused or reset, or 503 server_shutting_down) is sent
again to the next one. Every final answer is kept with the replica that gave it, its
x-request-id and when it came.

    fleet = Fleet([a.origin, b.origin])
    load = ChatLoad(http, fleet, token, total=200, concurrency=16)
    task = asyncio.create_task(load.run())
    await load.wait_answers(50)     # mid-load: kill, restart, flush ...
    fleet.remove(a.origin)
    await task
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}
# "hi" as one chat message (3 + 3, its role "user" and "hi": 1 token each) plus
# max_tokens: the gateway's estimate.
CHAT_ESTIMATE = 8 + 100
RETRY_PAUSE_S = 0.05


@dataclass(frozen=True, slots=True)
class Answer:
    index: int  # which of the load's requests
    origin: str  # the replica that answered
    status: int
    code: str | None  # error.code of a refusal
    request_id: str
    tokens: int  # usage.total_tokens of a 200, else 0
    at: float  # time.monotonic() when the answer arrived


@dataclass
class Fleet:
    """The replicas taking traffic now; a test removes one it kills, adds one it starts."""

    origins: list[str]

    def pick(self, turn: int) -> str:
        if not self.origins:
            raise LookupError("no replica left")
        return self.origins[turn % len(self.origins)]

    def remove(self, origin: str) -> None:
        if origin in self.origins:
            self.origins.remove(origin)

    def add(self, origin: str) -> None:
        self.origins.append(origin)


@dataclass
class ChatLoad:
    http: aiohttp.ClientSession
    fleet: Fleet
    token: str
    total: int = 200
    concurrency: int = 16
    body: Mapping[str, Any] = field(default_factory=lambda: CHAT)
    give_up_s: float = 120.0
    answers: list[Answer] = field(default_factory=list)
    resent: int = 0  # requests sent again after meeting a replica going away
    _counted: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def run(self) -> list[Answer]:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(index: int) -> None:
            async with gate:
                await self._send(index)

        await asyncio.gather(*(one(i) for i in range(self.total)))
        return self.answers

    async def wait_answers(self, count: int, within_s: float = 60.0) -> None:
        async with asyncio.timeout(within_s), self._counted:
            await self._counted.wait_for(lambda: len(self.answers) >= count)

    async def _send(self, index: int) -> None:
        deadline = time.monotonic() + self.give_up_s
        turn = index
        while True:
            assert time.monotonic() < deadline, f"request {index} found no replica to answer it"
            origin = self.fleet.pick(turn)
            turn += 1
            try:
                answer = await self._post(index, origin)
            except aiohttp.ClientConnectionError:
                answer = None  # the replica is gone (or going): nothing was answered
            if answer is None or answer.code == "server_shutting_down":
                self.resent += 1
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            async with self._counted:
                self.answers.append(answer)
                self._counted.notify_all()
            return

    async def _post(self, index: int, origin: str) -> Answer:
        async with self.http.post(
            f"{origin}/v1/chat/completions",
            json=dict(self.body),
            headers={"authorization": f"Bearer {self.token}"},
        ) as response:
            body = await response.json()
            status = response.status
            request_id = response.headers["x-request-id"]
        error = body.get("error") if status != 200 else None
        tokens = int(body["usage"]["total_tokens"]) if status == 200 else 0
        return Answer(
            index,
            origin,
            status,
            None if error is None else error.get("code"),
            request_id,
            tokens,
            time.monotonic(),
        )


def refusal_codes(answers: list[Answer]) -> set[tuple[int, str | None]]:
    """(status, code) of every answer that was not a 200."""
    return {(a.status, a.code) for a in answers if a.status != 200}


async def until(check: Callable[[], bool], within_s: float = 30.0, every_s: float = 0.02) -> None:
    """Wait until `check()` holds (something outside this event loop makes it true: a
    file another process writes, the clock); fail after `within_s`."""
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(every_s)
