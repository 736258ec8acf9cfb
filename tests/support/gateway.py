"""Run the real gateway app on 127.0.0.1 (port 0) with a policy written by the test.

async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
    client = gw.openai()
    token = await gw.token(team="demo")
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import openai
import uvicorn
from starlette.applications import Starlette

from gateway.app import build_app
from gateway.auth.access_tokens import mint_with_current_key
from gateway.services import Services
from gateway.settings import Settings


@asynccontextmanager
async def serve_asgi(app: Starlette) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn (httptools) on a free loopback port; yield its origin."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="on", log_config=None, access_log=False, http="httptools", loop="none"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if task.done():
                raise RuntimeError("the gateway failed to start; its log says why")
            if time.monotonic() > deadline:
                raise TimeoutError("gateway did not start")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        if not task.done():
            await asyncio.wait_for(task, 30)
        sock.close()


@dataclass
class RunningGateway:
    origin: str
    settings: Settings
    services: Services
    clients: list[openai.AsyncOpenAI] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    async def token(
        self,
        team: str = "demo",
        scopes: Iterable[str] = ("gateway:invoke",),
        ttl_s: int = 600,
        subject: str = "tester",
        issued_at: float | None = None,
        issuer: str | None = None,
        audience: str | None = None,
    ) -> str:
        """A token signed with the gateway's own key; `issuer`/`audience` default to the
        gateway's (a test passes others to see them refused)."""
        return await mint_with_current_key(
            self.settings.database_url,
            issuer=issuer or self.settings.issuer_url,
            audience=audience or self.settings.audience,
            team=team,
            subject=subject,
            client_id="tests",
            scopes=scopes,
            ttl_s=ttl_s,
            now=time.time() if issued_at is None else issued_at,
        )

    async def openai(self, team: str = "demo", **kwargs: object) -> openai.AsyncOpenAI:
        """An SDK client for `team`; closed when the gateway stops."""
        kwargs.setdefault("max_retries", 0)
        client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=await self.token(team),
            **kwargs,  # type: ignore[arg-type]  # test-chosen client options
        )
        self.clients.append(client)
        return client


@asynccontextmanager
async def running_gateway(
    tmp_path: Path, policy_yaml: str | None, **settings: object
) -> AsyncIterator[RunningGateway]:
    """Serve `build_app` on 127.0.0.1 with SQLite in `tmp_path`, its policy folder holding
    `policy_yaml` (None: the folder as an earlier gateway in `tmp_path` left it)."""
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    if policy_yaml is not None:
        (policies / "bundle.yaml").write_text(policy_yaml)
    config = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/gateway.db",
        policy_dir=policies,
        **settings,  # type: ignore[arg-type]  # test-chosen overrides
    )
    app = build_app(config)
    async with serve_asgi(app) as origin:
        gateway = RunningGateway(origin, config, app.state.services)
        try:
            yield gateway
        finally:
            for client in gateway.clients:
                await client.close()
