"""Observability: traces (OpenTelemetry GenAI), metrics (Prometheus), the names they use.

`Telemetry` is what the lifespan builds once per process and the pipeline's record
point feeds: `recorders` subscribe to `Services.recorders`. Tracing exists only when
GATEWAY_OTLP_ENDPOINT is set: without it the OpenTelemetry SDK is never imported.
Modules: names (every attribute and metric name), attributes and labels (pure maps
from the request context), current (the running request's trace), middleware (the
server span), tracing (the request's spans), otlp (their encoding and export),
metrics, multiproc (`--workers` N).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from gateway.context import RequestContext
from gateway.policy.compiled import Deployment
from gateway.policy.store import PolicyStore

if TYPE_CHECKING:
    from gateway.settings import Settings
    from gateway.telemetry.attributes import ServerAddress
    from gateway.telemetry.metrics import Metrics
    from gateway.telemetry.tracing import Tracing


@dataclass(frozen=True, slots=True)
class Telemetry:
    tracing: Tracing | None = None
    metrics: Metrics | None = None

    @classmethod
    def from_settings(cls, settings: Settings, policy: PolicyStore) -> Telemetry:
        tracing = None
        if settings.otlp_endpoint:
            from gateway.telemetry.tracing import Tracing  # the SDK loads only when used

            tracing = Tracing.to_otlp(
                settings.otlp_endpoint,
                settings.trace_sample_ratio,
                provider_type_of(policy),
                lambda: policy.version,
                provider_server_of(policy),
                settings.otlp_headers,
            )
        metrics = None
        if settings.metrics_enabled:
            from gateway.telemetry.metrics import Metrics

            metrics = Metrics(policy)
        return cls(tracing, metrics)

    @property
    def recorders(self) -> tuple[Callable[[RequestContext], None], ...]:
        found: list[Callable[[RequestContext], None]] = []
        if self.metrics is not None:
            found.append(self.metrics.record)
        if self.tracing is not None:
            found.append(self.tracing.record)
        return tuple(found)

    @property
    def on_cooldown(self) -> Callable[[Deployment], None] | None:
        return None if self.metrics is None else self.metrics.cooled

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.stop_watching_ledger()
        if self.tracing is not None:
            self.tracing.close()


def provider_type_of(policy: PolicyStore) -> Callable[[str], str | None]:
    """A provider's type in the running policy (None once the policy dropped it)."""

    def lookup(name: str) -> str | None:
        config = policy.current().providers.get(name)
        return None if config is None else config.type

    return lookup


# Distinct (provider type, api_base) pairs whose address is kept (least recently used go).
SERVERS_KEPT = 1024


def provider_server_of(policy: PolicyStore) -> Callable[[str], ServerAddress | None]:
    """A provider's `server.address`/`server.port` in the running policy, worked out once
    per provider type and api_base (None: the mock, an unknown default, a dropped provider)."""
    from gateway.telemetry.attributes import server_address  # imports the providers' code

    address_of = lru_cache(maxsize=SERVERS_KEPT)(server_address)

    def lookup(name: str) -> ServerAddress | None:
        config = policy.current().providers.get(name)
        return None if config is None else address_of(config.type, config.api_base)

    return lookup
