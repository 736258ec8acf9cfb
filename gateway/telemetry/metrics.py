"""Prometheus metrics: the instruments, their update from a finished request, the scrape.

Built once per process in the lifespan, on its own registry (no module global).
Under `gateway serve --workers N` the server sets PROMETHEUS_MULTIPROC_DIR to a
per-run directory (telemetry/multiproc.py) before the workers start: each worker
writes its values there and a scrape of any worker adds them all up. Labels come
from telemetry/labels.py: bounded by the policy, never a request id, subject or secret.

A single process counts its finished requests in batches: `record` keeps the context
and its duration, and the event loop counts what waits `APPLY_AFTER_S` later, or at
once when /metrics is scraped, so a scrape always sees every finished request.
Counting one request at a time, between everything else a request does, cost two to
three times the CPU. Under `--workers` a scrape of one worker cannot make the others
count what waits, so each worker counts every request at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.context import RequestContext
from gateway.policy.compiled import Deployment, Policy
from gateway.policy.store import PolicyStore
from gateway.telemetry import labels, names
from gateway.telemetry.attributes import answer_result
from gateway.telemetry.attributes import first_chunk_s as first_chunk_after
from gateway.telemetry.multiproc import MULTIPROC_ENV
from gateway.telemetry.names import TokenDirection
from gateway.usage.pricing import NANO_PER_USD

INPUT, OUTPUT = TokenDirection.INPUT.value, TokenDirection.OUTPUT.value

CONTENT_TYPE = CONTENT_TYPE_LATEST


def multiprocess_dir() -> str | None:
    """The shared directory when this process is one of several workers."""
    return os.environ.get(MULTIPROC_ENV) or None


LEDGER_NOTE_EVERY_S = 1.0  # how often a process reads the ledger backlog into its gauges
APPLY_AFTER_S = 0.05  # how long a finished request may wait to be counted (single process)

log = logging.getLogger("gateway.telemetry")


def _add(adds: dict[Any, float], counter: Any, amount: float) -> None:
    """What a batch adds to `counter` (a label set's child), for one increment."""
    adds[counter] = adds.get(counter, 0) + amount


class Metrics:
    def __init__(self, policy: PolicyStore, registry: CollectorRegistry | None = None) -> None:
        self._policy = policy
        # No `*_created` series beside each counter and histogram: they double the series
        # and Prometheus does not read them (prometheus_client's switch is process-wide).
        disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated in prometheus-client
        self.registry = CollectorRegistry() if registry is None else registry
        r = self.registry
        team_model = ("team", "model", "deployment")
        self.requests = Counter(
            names.REQUESTS,
            "Inference requests by team, model, deployment, endpoint and HTTP status.",
            (*team_model, "endpoint", "status"),
            registry=r,
        )
        self.tokens = Counter(
            names.TOKENS, "Tokens consumed, input and output.", (*team_model, "direction"),
            registry=r,
        )  # fmt: skip
        self.cost = Counter(names.COST_USD, "Cost in US dollars.", team_model, registry=r)
        self.duration = Histogram(
            names.REQUEST_DURATION,
            "Inference request duration, from arrival to the last byte.",
            ("model", "endpoint"),
            buckets=names.DURATION_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            names.TIME_TO_FIRST_TOKEN,
            "Streams: time to the first event sent to the client, from the start of the"
            " upstream attempt that answered (a failover's earlier attempts are in the"
            " request duration, not charged to the answering deployment).",
            ("model", "deployment"),
            buckets=names.TTFT_BUCKETS,
            registry=r,
        )
        self.attempts = Counter(
            names.UPSTREAM_ATTEMPTS, "Upstream attempts by deployment and result.",
            ("deployment", "result"), registry=r,
        )  # fmt: skip
        self.failovers = Counter(
            names.UPSTREAM_FAILOVERS,
            "Times a request left a failed deployment for another (a retry of the same"
            " deployment is not one: see gateway_upstream_attempts_total).",
            ("deployment",), registry=r,
        )  # fmt: skip
        self.cooldowns = Counter(
            names.UPSTREAM_COOLDOWNS, "Times a deployment entered its cooldown.",
            ("deployment",), registry=r,
        )  # fmt: skip
        self.refusals = Counter(
            names.REFUSALS, "Requests refused by a rate limit or a budget.",
            ("team", "kind"), registry=r,
        )  # fmt: skip
        self.guardrail_actions = Counter(
            names.GUARDRAIL_ACTIONS, "Guardrail actions taken, by team, rule and action.",
            ("team", "rule", "action"), registry=r,
        )  # fmt: skip
        # Response cache (issue 14): what each request under a cache policy was served as.
        self.cache_requests = Counter(
            names.CACHE_REQUESTS, "Requests under a cache policy: hit, miss or bypass.",
            ("team", "model", "result"), registry=r,
        )  # fmt: skip
        self.cache_unavailable = Counter(
            names.CACHE_UNAVAILABLE,
            "Response-cache lookups and stores its backend (Redis) did not answer.",
            registry=r,
        )
        self.limits_unchecked = Counter(
            names.LIMITS_UNCHECKED,
            "Requests served without a limits check: the limits backend (Redis) did not"
            " answer and the policy says on_backend_error: open. Their usage is charged"
            " to the budgets once it is back.",
            ("team",), registry=r,
        )  # fmt: skip
        # Each worker reports the version it enforces; the scrape shows the newest.
        self.policy_version = Gauge(
            names.POLICY_VERSION, "The policy version in force.", registry=r,
            multiprocess_mode="max",
        )  # fmt: skip
        # Each worker's own backlog; the scrape sums them (stale workers drop out: livesum).
        self.ledger_queue_rows = Gauge(
            names.LEDGER_QUEUE_ROWS, "Ledger rows waiting in memory to be written.",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.ledger_spool_bytes = Gauge(
            names.LEDGER_SPOOL_BYTES, "Bytes of ledger rows spooled to disk, not yet replayed.",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self._ledger_backlog: Callable[[], tuple[int, int]] | None = None
        self._backlog_noted: tuple[int, int] | None = None
        self._is_watching_ledger = False
        self._version_seen: int | None = None
        self._children: dict[tuple[object, ...], Any] = {}
        self._request_children: dict[tuple[object, ...], tuple[Any, ...]] = {}
        self._batches = multiprocess_dir() is None  # one process: its scrape counts the rest
        if self._batches and registry is None:
            # What prometheus-client's default registry has and scrapers expect
            # (process_cpu_seconds_total, process_resident_memory_bytes, ...,
            # python_info), read at scrape time only. Under --workers they are left out,
            # as prometheus-client's multiprocess mode documents: a scrape reaches one
            # worker, whose own figures would pass for the whole server's.
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        self._waiting: list[tuple[RequestContext, float]] = []
        self._note_policy_version()

    def watch_ledger(self, backlog: Callable[[], tuple[int, int]]) -> None:
        """Report the ledger writer's backlog (rows in memory, spool bytes), read again
        every LEDGER_NOTE_EVERY_S on the event loop: the writer drains it between
        requests, and under --workers a scrape reaches one worker only, so the others'
        values must not wait for a request or a scrape of their own."""
        self._ledger_backlog = backlog
        self._note_ledger()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # outside an event loop (a tool): noted at each scrape only
        self._is_watching_ledger = True
        loop.call_later(LEDGER_NOTE_EVERY_S, self._tick_ledger, loop)

    def _tick_ledger(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._is_watching_ledger:
            self._note_ledger()
            loop.call_later(LEDGER_NOTE_EVERY_S, self._tick_ledger, loop)

    def stop_watching_ledger(self) -> None:
        """The next tick is the last (safe from another thread: a flag, no loop call)."""
        self._is_watching_ledger = False

    def _note_ledger(self) -> None:
        """The gauges, written only when the backlog changed (idle: two reads a tick)."""
        if self._ledger_backlog is None:
            return
        backlog = self._ledger_backlog()
        if backlog != self._backlog_noted:
            self._backlog_noted = backlog
            rows, spool_bytes = backlog
            self.ledger_queue_rows.set(rows)
            self.ledger_spool_bytes.set(spool_bytes)

    def _note_policy_version(self) -> None:
        version = self._policy.version
        if version is not None and version != self._version_seen:
            self._version_seen = version
            self.policy_version.set(version)

    def _child(self, metric: Counter | Histogram, *values: str) -> Any:
        """`metric.labels(*values)`, remembered: prometheus-client checks and locks on
        every `labels` call. Bounded as the label values are (by the policy)."""
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def _per_request(
        self, team: str, model: str, deployment: str, ctx: RequestContext, is_costed: bool
    ) -> tuple[Any, ...]:
        """(requests, duration, input tokens, output tokens, cost) children for these
        labels, found with one lookup: what an answered request updates. The token and
        cost ones are None (never created: no zero series) for a request without them."""
        has_usage = ctx.usage is not None
        key = (team, model, deployment, ctx.endpoint, ctx.status, has_usage, is_costed)
        found = self._request_children.get(key)
        if found is None:
            child = self._child
            found = self._request_children[key] = (
                child(self.requests, team, model, deployment, ctx.endpoint, str(ctx.status)),
                child(self.duration, model, ctx.endpoint),
                child(self.tokens, team, model, deployment, INPUT) if has_usage else None,
                child(self.tokens, team, model, deployment, OUTPUT) if has_usage else None,
                child(self.cost, team, model, deployment) if is_costed else None,
            )
        return found

    def record(self, ctx: RequestContext) -> None:
        """A recorder (Services.recorders): count one finished request, now or (one
        process, on the event loop) with the next batch."""
        self._waiting.append((ctx, ctx.elapsed_s()))
        loop = self._batching_loop()
        if loop is None:
            self._count_waiting()
        elif len(self._waiting) == 1:
            loop.call_later(APPLY_AFTER_S, self._count_waiting)

    def _batching_loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop to count a batch on; None: count now (several workers, or a
        call from outside the event loop)."""
        if not self._batches:
            return None
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None

    def _count_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return
        policy = self._policy.current()  # the labels' bounds: one snapshot per batch
        # What the batch adds to each counter (a label set's child): one increment per
        # counter, not one per request (each takes prometheus-client's lock).
        adds: dict[Any, float] = {}
        # What every answered request adds (one, its tokens, its cost), summed per
        # label set's children (`_per_request`): one lookup per request, not four.
        answered: dict[tuple[Any, ...], list[int]] = {}
        for ctx, elapsed_s in waiting:
            try:
                self._count(ctx, elapsed_s, policy, adds, answered)
            except Exception:  # one request's bug must not cost the rest their counts
                log.exception("counting a request failed")
        for (requests, _, input_tokens, output_tokens, cost), sums in answered.items():
            _add(adds, requests, sums[0])
            if input_tokens is not None:
                _add(adds, input_tokens, sums[1])
                _add(adds, output_tokens, sums[2])
            if cost is not None:
                _add(adds, cost, sums[3] / NANO_PER_USD)
        for counter, amount in adds.items():
            counter.inc(amount)
        self._note_policy_version()

    def _count(
        self,
        ctx: RequestContext,
        elapsed_s: float,
        policy: Policy,
        adds: dict[Any, float],
        answered: dict[tuple[Any, ...], list[int]],
    ) -> None:
        team = labels.team_label(ctx, policy.teams)
        model = labels.model_label(ctx, policy.models)
        deployment = labels.deployment_label(ctx)
        child = self._child
        is_costed = ctx.prices is not None and bool(ctx.cost_nanousd)
        children = self._per_request(team, model, deployment, ctx, is_costed)
        children[1].observe(elapsed_s)  # the duration histogram: each request in its bucket
        sums = answered.get(children)
        if sums is None:
            sums = answered[children] = [0, 0, 0, 0]
        sums[0] += 1
        usage = ctx.usage
        if usage is not None:
            sums[1] += usage.input_tokens
            sums[2] += usage.output_tokens
        if is_costed:
            sums[3] += ctx.cost_nanousd
        tries = ctx.tries
        if tries and tries[-1].is_answer:  # a cache hit had no attempt: no deployment's wait
            first_chunk_s = first_chunk_after(ctx, tries[-1].started_s)
            if first_chunk_s is not None:
                child(self.ttft, model, deployment).observe(first_chunk_s)
        if tries:
            for label, result in labels.attempt_results(tries, answer_result(ctx)):
                _add(adds, child(self.attempts, label, result.value), 1)
            if len(tries) > 1:  # only a second attempt can follow a failed one
                for label in labels.failed_over_from(tries):
                    _add(adds, child(self.failovers, label), 1)
        kind = labels.refusal_kind(ctx)
        if kind is not None:
            _add(adds, child(self.refusals, team, kind.value), 1)
        for hit in ctx.guardrail_hits:  # rule names come from the policy: a bounded set
            _add(adds, child(self.guardrail_actions, team, hit.rule, hit.action.value), 1)
        if ctx.cache is not None:  # response cache (issue 14)
            _add(adds, child(self.cache_requests, team, model, ctx.cache.value), 1)
        if ctx.cache_unavailable:
            _add(adds, self.cache_unavailable, ctx.cache_unavailable)
        hold = ctx.limits_hold
        if hold is not None and not hold.is_checked:
            _add(adds, child(self.limits_unchecked, team), 1)

    def cooled(self, deployment: Deployment) -> None:
        """The health board's hook: a deployment began its cooldown."""
        self.cooldowns.labels(deployment.label).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition: this process's, or every worker's."""
        self._count_waiting()
        self._note_policy_version()
        self._note_ledger()
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]  # unannotated in prometheus-client
        return generate_latest(registry)
