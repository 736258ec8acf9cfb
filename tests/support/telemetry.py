"""The gateway in-process with its spans kept in memory, for tests that read them.

async with traced_gateway(tmp_path, POLICY) as (gw, spans):
    ...
    server = one(spans.get_finished_spans(), kind=SpanKind.SERVER)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.app import build_app
from gateway.policy.store import PolicyStore
from gateway.services import build_services
from gateway.settings import Settings
from gateway.telemetry import Telemetry, provider_server_of, provider_type_of
from gateway.telemetry.metrics import Metrics
from gateway.telemetry.tracing import Tracing
from tests.support.gateway import RunningGateway, serve_asgi


@asynccontextmanager
async def traced_gateway(
    tmp_path: Path, policy_yaml: str, **settings: object
) -> AsyncIterator[tuple[RunningGateway, InMemorySpanExporter]]:
    """The real app on 127.0.0.1 whose spans end up in an InMemorySpanExporter at once;
    `settings` as running_gateway takes them."""
    policies = tmp_path / "policies"
    policies.mkdir(exist_ok=True)
    (policies / "bundle.yaml").write_text(policy_yaml)
    config = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/gateway.db",
        policy_dir=policies,
        **settings,  # type: ignore[arg-type]  # test-chosen overrides
    )
    exporter = InMemorySpanExporter()

    def telemetry_for(_settings: Settings, store: PolicyStore) -> Telemetry:
        processor = SimpleSpanProcessor(exporter)
        tracing = Tracing(
            processor,
            provider_type_of(store),
            lambda: store.version,
            server_of=provider_server_of(store),
        )
        return Telemetry(tracing, Metrics(store))

    async with build_services(config, telemetry_for) as services:
        app = build_app(config, services)
        async with serve_asgi(app) as origin:
            gateway = RunningGateway(origin, config, services)
            try:
                yield gateway, exporter
            finally:
                for client in gateway.clients:
                    await client.close()
