"""The request path, stage by stage, from token to record: the one owner of a request.

`handle` runs every stage in order for one inference request and ends it in one
place (`finish`), however it ends: a whole answer, a stream, a refusal, a client
that hung up, or a shutdown cut. The HTTP edge (api/openai.py) only parses,
watches for a disconnect and renders, through the `Exchange` it hands in.

    authenticate → read body → authorize (Grant) → pin conversation
    → [guard input → reserve: later] → route (failover) → relay or answer
    → [guard output, settle: later] → finish → record

Each stage is a plain function of the request context; a refusal is raised as a
GatewayError and rendered once, here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

import orjson

from gateway.auth.authorization_header import bearer_token
from gateway.auth.principal import NO_TEAM, SCOPE_INVOKE, Principal
from gateway.cache import flow as cache_flow  # response cache (issue 14)
from gateway.cache.errors import NotCached  # response cache: only-if-cached, a 504 asked for
from gateway.cache.replay import StreamAssembler  # response cache (issue 14)
from gateway.cache.stage import CachePlan  # response cache (issue 14)
from gateway.context import Outcome, RequestContext, outcome_of_status
from gateway.drain import ShuttingDown, shutdown_cut, shutting_down
from gateway.errors import (
    AuthenticationFailed,
    EndpointNotSupported,
    GatewayError,
    InsufficientScope,
    ModelNotAllowed,
    ModelNotFound,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_body_bytes,
    quoted,
    unexpected,
)
from gateway.guardrails.decision import Blocked
from gateway.guardrails.guards import Guards
from gateway.guardrails.stage import guard_input, guard_output, guard_upstream_error, refusal
from gateway.guardrails.stream_scanner import OutputScanner
from gateway.guardrails.texts import asks_for_json
from gateway.limits.estimate import largest_cap, output_allowance
from gateway.limits.stage import (
    forwarded_body,
    limits_headers,
    refusal_limits_headers,
    reserve_limits,
    reserved_tokens,
    settle_limits,
)
from gateway.policy.compiled import Deployment, ModelRoute, Policy, TeamRules
from gateway.providers.answer_json import read_answer
from gateway.providers.base import (
    Endpoint,
    Provider,
    UpstreamCall,
    UpstreamClientError,
    UpstreamFailure,
    upstream_request_id,
)
from gateway.providers.error_answer import is_failed_response, missing_answer
from gateway.routing.affinity import ResponseIdKey, ResponseIds
from gateway.routing.failover import (
    Attempt,
    HealthBoard,
    call_with_failover,
    log_failed_attempt,
)
from gateway.routing.tries import Tries
from gateway.services import Services
from gateway.sse import ends_on_error
from gateway.stream.answer_text import AnswerText
from gateway.stream.relay import (
    ErrorEvent,
    ResponsesErrorEvent,
    StreamEnd,
    close_stream,
    error_event,
    relay,
)
from gateway.stream.response_ids import ResponseIdRewriter
from gateway.stream.steps import Chain, Step
from gateway.stream.upstream_tap import UpstreamTap
from gateway.stream.usage_observer import UsageObserver
from gateway.telemetry.attributes import response_facts
from gateway.telemetry.current import attempt_observer, current_trace
from gateway.telemetry.stream_facts import StreamFacts
from gateway.usage.pricing import charged_prices, cost_nanousd, usd_text
from gateway.usage.usage import (
    Usage,
    answer_tier,
    capped_usage,
    estimate_usage,
    output_text,
    usage_from_report,
    wire_usage,
    within_output_cap,
)

T = TypeVar("T")
log = logging.getLogger("gateway.pipeline")
# A stream still writing to its client this long after the request's deadline is cut
# (the relay's own deadline, mid-read, comes first and sends an error event).
CLIENT_GRACE_S = 1.0
CLIENT_TOO_SLOW = "client_too_slow"  # the records' code for a stream cut that way
SENT_KEPT = 3  # a stream's last writes kept: is the error event among the last? (sse.py)
Headers = list[tuple[bytes, bytes]]

ENDPOINT_PATHS = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
    "responses": "/v1/responses",
}
SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
JSON_HEADERS: Headers = [(b"content-type", b"application/json")]


@dataclass(frozen=True, slots=True)
class ParsedBody:
    """A request body the edge has read and checked (api/body.py)."""

    body: dict[str, Any]
    model: str
    is_stream: bool
    is_large: bool = False  # api/body.is_large: the limits' estimate walks it on a thread


class Exchange(Protocol):
    """The HTTP edge as the pipeline sees it: the request, and where the answer goes."""

    request_id: str
    endpoint: Endpoint
    cache_control: tuple[str, ...]  # the request's Cache-Control values (response cache)
    has_answered: bool  # the status line has gone out
    model: str | None  # the body's model alias once it parsed, even if a field is refused
    peer: str | None  # the caller's address (a trusted proxy's X-Forwarded-For resolved)

    @property
    def authorization(self) -> str | None:
        """The Authorization header; a GatewayError when the request repeats it."""
        ...

    async def read_body(self) -> ParsedBody:
        """Read, parse and check the body (GatewayError if bad); from then on a client
        that hangs up cancels the request's task."""
        ...

    def left(self) -> bool:
        """After a CancelledError: was it the client hanging up? (Then it is absorbed.)"""
        ...

    def cut_by_shutdown(self) -> bool:
        """After a CancelledError: did the drain's grace run out? (Then it is absorbed.)"""
        ...

    async def answer(self, status: int, body: bytes, headers: Headers) -> None: ...

    async def start_stream(self, headers: Headers) -> None: ...

    async def send(self, data: bytes) -> None: ...

    async def end_stream(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Grant:
    """What authorization decided: who calls, under which team rules, along which route.

    Read from one policy snapshot; later stages read the grant, never the policy.
    `route` holds only deployments that can serve the endpoint, each with its price.
    """

    principal: Principal
    team: TeamRules
    route: ModelRoute


# --- the line ----------------------------------------------------------------


async def handle(exchange: Exchange, services: Services, *, draining: bool = False) -> None:
    """One inference request from token to record. Every refusal is rendered here, a
    fault of the gateway's own too (an OpenAI-shaped 500/503, the trace only in our log).
    Raises only a cancellation, and a fault after the answer began (the server closes)."""
    ctx = RequestContext(exchange.request_id, exchange.endpoint, peer=exchange.peer)
    services.in_flight.enter()
    try:
        if draining:  # SIGTERM: new requests go to another replica (before other work)
            await _name_the_caller(ctx, exchange, services)
            raise shutting_down()
        await _run(ctx, exchange, services)
    except GatewayError as error:  # a client that hung up mid-upload included: a 499
        await _refuse(ctx, exchange, services, error, _outcome_of(error))
    except asyncio.CancelledError:
        if not exchange.left():
            if exchange.cut_by_shutdown():  # the drain's grace ran out: say so, then end
                await _cut_by_shutdown(ctx, exchange, services)
                return
            ctx.outcome = Outcome.CANCELLED  # the server cut it at its shutdown deadline
            raise
        # The client is gone; the work in flight (and the upstream call) was cancelled.
        # 499 even mid-stream, when a 200 status line went out: the records say how the
        # request ended (a stream is only watched until its end, so this one was cut),
        # unless an error reached the client first (the upstream's failure, or the
        # stream's own error event: then the client left because of it, booked as it).
        # What its upstream was sent or generated is charged already (_run).
        if ctx.outcome is Outcome.OK:
            ctx.end(499, Outcome.CLIENT_DISCONNECTED)
    except Exception as exc:
        log.error("unhandled error", exc_info=exc, extra={"fields": {"request_id": ctx.request_id}})
        if exchange.has_answered:
            ctx.end(ctx.status, Outcome.GATEWAY_ERROR, unexpected(exc).code)
            raise
        await _refuse(ctx, exchange, services, unexpected(exc), Outcome.GATEWAY_ERROR)
    finally:
        finish(ctx, services)


async def _refuse(
    ctx: RequestContext,
    exchange: Exchange,
    services: Services,
    error: GatewayError,
    outcome: Outcome,
) -> None:
    ctx.end(error.status, outcome, error.code)
    ctx.error_detail = error.detail
    headers = _error_headers(ctx, error) + await refusal_limits_headers(ctx, services)
    await exchange.answer(error.status, error_body_bytes(error), headers)


async def _cut_by_shutdown(ctx: RequestContext, exchange: Exchange, services: Services) -> None:
    """The drain's grace (or uvicorn's shutdown deadline) ran out mid-request (what was
    generated is charged already; a request not answered yet, the prompt its upstream
    has: _run): a request not yet answered gets the 503, a stream its error event and
    its end; the records say 503, cancelled. A whole answer already sent stays as it was."""
    error = shutdown_cut()
    # Within uvicorn's own shutdown deadline, whose cancel would cut this too: a client
    # that does not read gets no more time than a slow one would.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLIENT_GRACE_S):
            if not exchange.has_answered:
                await _refuse(ctx, exchange, services, error, Outcome.CANCELLED)
            elif ctx.is_stream:
                ctx.end(error.status, Outcome.CANCELLED, error.code)
                end_event = ctx.stream_error_event or _error_event_of(ctx.endpoint)
                await exchange.send(end_event(error))  # numbered after the last event sent
                await exchange.end_stream()


async def _charge_the_prompt_sent(ctx: RequestContext, carried: int) -> None:
    """A client gone (or a shutdown cut) before its answer was charged (no usage yet)
    while an attempt was out: that upstream has the prompt and bills it, answered or
    not, so the prompt is charged, counted here (estimated), at that deployment's
    prices; finish settles the hold with it. With no attempt out (none started, or the
    last one failed) nothing is: a failed attempt is never charged. Only on this path:
    an answered request's usage is charged where it is read.

    A Responses follow-up's upstream also read the conversation it continues: its
    `carried` tokens (as its reservation counted them) are charged as input too (a usage
    charged already holds them: the answer's paths add them to what they count)."""
    if ctx.usage is not None:
        return
    last = ctx.tries[-1] if ctx.tries else None
    body = ctx.request_body
    if last is None or last.failure is not None or body is None:
        return
    model = last.deployment.model
    # Off the loop: a long prompt takes milliseconds to count (most are remembered).
    usage = await asyncio.to_thread(estimate_usage, ctx.endpoint, body, model, "")
    charge(ctx, last.deployment, _with_carried(usage, carried) if carried else usage)


def _with_carried(usage: Usage, carried: int) -> Usage:
    """A usage counted here from the new input, with the carried conversation's tokens."""
    return capped_usage(
        usage.input_tokens + carried,
        usage.output_tokens,
        usage.cached_tokens,
        is_estimated=True,
        cache_write_tokens=usage.cache_write_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )


def finish(ctx: RequestContext, services: Services) -> None:
    """The request's single end: every recorder gets the finished context once."""
    try:
        settle_limits(ctx, services)  # limits: settle or release, once (issue 9)
        for record in services.recorders:
            try:
                record(ctx)
            except Exception:  # one recorder's bug must not cost the others their record
                log.exception("a recorder failed", extra={"fields": {"request_id": ctx.request_id}})
    finally:
        services.in_flight.leave()


async def _name_the_caller(ctx: RequestContext, exchange: Exchange, services: Services) -> None:
    """Put the caller, and the model its body names, on a refusal's records when its token
    verifies (a drain's 503 row names the team and model it would have billed: finance's
    per-model counts, probe p18); a token that does not leaves them empty, its body unread."""
    policy = services.policy.current()
    with contextlib.suppress(GatewayError):
        principal = await authenticate(exchange.authorization, services, policy)
        _caller_on_records(ctx, policy, principal)
        try:
            await exchange.read_body()
        finally:  # a body refused for a field still names its model
            ctx.model = exchange.model


def _caller_on_records(ctx: RequestContext, policy: Policy, principal: Principal) -> None:
    # A team the policy lacks is refused: recorded with no team (NO_TEAM).
    known = principal.team in policy.teams
    ctx.principal = principal if known else replace(principal, team=NO_TEAM)


async def _run(ctx: RequestContext, exchange: Exchange, services: Services) -> None:
    policy = services.policy.current()  # one snapshot for the whole request
    principal = await authenticate(exchange.authorization, services, policy)
    _caller_on_records(ctx, policy, principal)  # a team the policy lacks is refused below
    team = admitted(policy, principal)  # before the body: a 401/403 outranks a 400
    try:
        parsed = await exchange.read_body()
    finally:  # a body refused for another field keeps its model on the records
        ctx.model = exchange.model
    ctx.model, ctx.is_stream = parsed.model, parsed.is_stream
    grant = authorize(policy, principal, team, parsed.model, ctx.endpoint, services.providers.get)
    route, body, ids = pin_conversation(
        ctx.endpoint, grant.route, parsed.body, grant.team.name, services.response_id_key
    )  # response id binding: only the team's own ids continue a conversation
    # guard input: before any reservation; may redact the body, or refuse it.
    guards = grant.team.guards
    checked = await guard_input(guards, ctx.endpoint, body, parsed.model, services.classifiers)
    ctx.guardrail_hits.extend(checked.hits)
    if isinstance(checked, Blocked):
        raise refusal(checked)
    body = checked.body
    # response cache (issue 14): after guard input (a blocked prompt never reaches it, a
    # redacted one is keyed redacted), before any token reservation.
    cached = await cache_flow.consult(
        ctx, services.cache, team=grant.team, route=route, body=body,
        cache_control=exchange.cache_control, subject=principal.subject,
        timezone=policy.timezone,
    )  # fmt: skip
    hit = None if cached is None else cached.hit
    # limits: reserve (issue 9); a hit passes rpm and concurrency only, it spends no tokens.
    # A Responses follow-up also carries its stored conversation, billed as input.
    if ids is not None and ids.carried_tokens:  # a streamed answer's bound: known smaller?
        await ids.count_known_size(services.response_sizes)
    carried = 0 if ids is None else ids.carried_tokens
    tokens = hit is None
    if cached is not None and hit is None:  # a refusal by a limit says so too: it was looked up
        ctx.cache = cached.status
    waiting = reserve_limits(
        ctx, policy, grant, body, services, tokens=tokens, carried=carried, large=parsed.is_large
    )
    if waiting is not None:  # in process with a short prompt, none: no coroutine made
        await waiting
    body = forwarded_body(ctx, body, grant.team.max_tokens_default)  # caps what it reserved
    ctx.request_body = body  # for the spans and a log_content access line, read after it
    ctx.logs_content = grant.team.log_content  # the access line carries the text (opt-in)
    plan = None if cached is None else cached.plan
    if cached is not None and hit is not None:  # once admitted: served (a miss said so above)
        ctx.cache = cached.status
    try:  # free unless raised (3.11's zero-cost try): nothing added to the answer's path
        if hit is not None:
            await _answer_from_cache(ctx, exchange, hit, route)
        elif ctx.is_stream:
            await _stream(ctx, exchange, route, body, ids, services, guards, plan)
        else:
            await _whole(ctx, exchange, route, body, ids, services, guards, plan)
    except asyncio.CancelledError:  # a hang-up or a shutdown cut: `handle` says which
        await _charge_the_prompt_sent(ctx, carried)
        raise


# --- stages ------------------------------------------------------------------


async def authenticate(
    authorization: str | None, services: Services, policy: Policy | None = None
) -> Principal:
    """Bearer token → Principal (401 on anything else)."""
    return await services.verifier.verify(bearer_token(authorization), policy)


def require_scope(principal: Principal, scope: str) -> None:
    if not principal.has_scope(scope):
        raise InsufficientScope(f"The access token lacks the '{scope}' scope.", scope=scope)


def team_of(policy: Policy, principal: Principal) -> TeamRules:
    team = policy.teams.get(principal.team)
    if team is None:
        # A token for a team the policy no longer has is as good as revoked.
        raise AuthenticationFailed("The access token's team is not known.", token_sent=True)
    return team


def admitted(policy: Policy, principal: Principal) -> TeamRules:
    """The caller's team, if its token may call models at all (401/403 otherwise)."""
    require_scope(principal, SCOPE_INVOKE)
    return team_of(policy, principal)


def authorize(
    policy: Policy,
    principal: Principal,
    team: TeamRules,
    model: str,
    endpoint: Endpoint,
    provider_of: Callable[[str], Provider],
) -> Grant:
    """May the admitted principal call this model on this endpoint? 403/404/400 otherwise."""
    route = policy.models.get(model)
    if route is None:
        raise ModelNotFound(
            f"The model {quoted(model)} does not exist or you do not have access to it.",
            param="model",
        )
    if not team.allows(model):
        raise ModelNotAllowed(
            f"Team '{team.name}' is not allowed to use the model '{model}'.", param="model"
        )
    return Grant(principal, team, servable(route, endpoint, provider_of))


def servable(
    route: ModelRoute, endpoint: Endpoint, provider_of: Callable[[str], Provider]
) -> ModelRoute:
    """Keep the deployments whose provider can serve this endpoint (400 if none can)."""
    deployments = route.deployments
    for deployment in deployments:  # the common case, without building a tuple
        if endpoint not in provider_of(deployment.provider).endpoints:
            break
    else:
        return route
    usable = tuple(d for d in deployments if endpoint in provider_of(d.provider).endpoints)
    if not usable:
        raise EndpointNotSupported(
            f"The model '{route.alias}' cannot serve {ENDPOINT_PATHS[endpoint]}.",
            param="model",
        )
    if len(usable) == len(route.deployments):
        return route
    return replace(route, deployments=usable)


def pin_conversation(
    endpoint: Endpoint, route: ModelRoute, body: dict[str, Any], team: str, key: ResponseIdKey
) -> tuple[ModelRoute, Mapping[str, Any], ResponseIds | None]:
    """Responses API: a follow-up goes to the deployment that holds its conversation,
    and only for the team it was minted for (404 previous_response_not_found otherwise)."""
    if endpoint != "responses":
        return route, body, None
    ids = ResponseIds(key, team)
    pinned, pinned_body = ids.pin(route, body)
    return pinned, pinned_body, ids


def upstream_call(
    ctx: RequestContext, body: Mapping[str, Any], deployment: Deployment
) -> UpstreamCall:
    """The client's body for one deployment: its model, and always a usage report."""
    rewritten = dict(body)
    rewritten["model"] = deployment.model
    if ctx.is_stream and ctx.endpoint in ("chat", "completions"):
        options = body.get("stream_options")
        rewritten["stream_options"] = {
            **(options if isinstance(options, Mapping) else {}),
            "include_usage": True,
        }
    return UpstreamCall(ctx.endpoint, rewritten, deployment.model, ctx.is_stream, ctx.request_id)


async def _first_answer(
    ctx: RequestContext,
    route: ModelRoute,
    services: Services,
    attempt: Attempt[T],
    guards: Guards,
    ids: ResponseIds | None,
    *,
    streamed: bool = False,
) -> tuple[Deployment, T]:
    """The failover loop; an upstream's refusal of the request itself becomes the
    caller's error, its message under the output rules (it may quote the prompt) and
    with the response ids the client knows (`ids`). What routing tried is copied to the
    context however it ends. `streamed`: the deployment's success is booked when its
    stream ends well, not at its first event."""
    tries = Tries(attempt_observer(ctx))  # telemetry: one client span per attempt
    try:
        return await call_with_failover(
            route,
            lambda d: services.providers.get(d.provider),
            services.health,
            attempt,
            tries=tries,
            request_id=ctx.request_id,
            success_on_answer=not streamed,
        )
    except UpstreamClientError as error:
        message = error.message if ids is None else ids.rewrite_message(error.message)
        said = await guard_upstream_error(
            guards, ctx.endpoint, message, type_=error.type, param=error.param, code=error.code
        )
        ctx.guardrail_hits.extend(said.hits)
        raise UpstreamRejected(
            error.status, said.message, type_=said.type, param=said.param, code=said.code
        ) from None
    finally:
        ctx.attempts, ctx.deployment = tries.count, tries.last_deployment
        ctx.tries = tries.all


async def _whole(
    ctx: RequestContext,
    exchange: Exchange,
    route: ModelRoute,
    body: Mapping[str, Any],
    ids: ResponseIds | None,
    services: Services,
    guards: Guards,
    plan: CachePlan | None = None,
) -> None:
    """A whole answer from the first deployment that answers; usage on the context."""

    async def attempt(
        provider: Provider, deployment: Deployment, deadline: float
    ) -> tuple[bytes, dict[str, Any]]:
        reply = await provider.send(upstream_call(ctx, body, deployment))
        try:
            payload, raw = read_answer(reply.body)
        except ValueError:
            raise UpstreamFailure(f"{deployment.label}: response is not JSON") from None
        if not isinstance(payload, dict):
            raise UpstreamFailure(f"{deployment.label}: response is not a JSON object")
        missing = missing_answer(ctx.endpoint, payload)  # `{}`, `{"choices": "x"}`: failed
        if missing is not None:
            raise UpstreamFailure(f"{deployment.label}: {missing}")
        return raw, payload

    deployment, (raw, payload) = await _first_answer(ctx, route, services, attempt, guards, ids)
    if current_trace() is not None:  # telemetry: id, model, finish reasons, for its spans
        ctx.response_id, ctx.response_model, ctx.finish_reasons = response_facts(payload)
    usage = usage_from_report(payload.get("usage"), answer_tier(payload))
    counted = usage is None
    if usage is None:
        generated = output_text(ctx.endpoint, payload)
        usage = await asyncio.to_thread(
            estimate_usage, ctx.endpoint, body, deployment.model, generated
        )
        if ids is not None and ids.carried_tokens:  # counted from the new input only
            usage = _with_carried(usage, ids.carried_tokens)
    charge(ctx, deployment, usage)
    failed = ctx.endpoint == "responses" and is_failed_response(payload)
    if failed:  # relayed as it came (cleaned); booked as a stream's `response.failed` is
        _book_upstream_failure(ctx, services.health, deployment, route, "response failed")
    # guard output: redact the answer, or refuse it (the usage above is still charged).
    # JSON text (response_format): redacted so that it stays JSON.
    is_json = guards.checks_output and asks_for_json(ctx.endpoint, body)
    answer = await guard_output(guards, ctx.endpoint, payload, is_json=is_json)
    ctx.guardrail_hits.extend(answer.hits)
    if isinstance(answer, Blocked):
        error = refusal(answer)
        # Generated and charged all the same: the refusal says what it cost, as the answer
        # would have (how the cache saw it: _error_headers, as on every 4xx).
        said = _cost_headers(ctx)
        error.headers.update((name.decode(), value.decode()) for name, value in said)
        raise error
    if ctx.logs_content:  # what the client gets, redacted: for its access line
        ctx.answer_texts = [output_text(ctx.endpoint, answer.body)]
    reply = answer.body
    if counted and reply.get("usage") is None:  # as OpenAI's: the count the gateway made
        reply = {**reply, "usage": wire_usage(ctx.endpoint, usage)}
    if reply is not payload:
        raw = orjson.dumps(reply)
    if ids is not None:
        # The conversation now stored: the upstream's own count (its input holds the
        # carried context), exact, or the gateway's (the carried context added above).
        ids.learn(deployment, payload, usage.input_tokens + usage.output_tokens)
        raw = ids.rewrite(raw)
    # Settled before the client has the answer: its next request, sent then, must find
    # the concurrency slot free (the cache's store below awaits).
    settle_limits(ctx, services)
    await exchange.answer(200, raw, JSON_HEADERS + _answer_headers(ctx) + _cost_headers(ctx))
    if plan is not None and not failed and cache_flow.stores(ctx, plan):  # guarded, sent: keep
        await cache_flow.keep(ctx, services.cache, plan, raw, deployment.label)


async def _stream(
    ctx: RequestContext,
    exchange: Exchange,
    route: ModelRoute,
    body: Mapping[str, Any],
    ids: ResponseIds | None,
    services: Services,
    guards: Guards,
    plan: CachePlan | None = None,
) -> None:
    """Fail over until some deployment sent its first chunk, then relay the rest."""
    health = services.health

    async def attempt(
        provider: Provider, deployment: Deployment, deadline: float
    ) -> tuple[Any, bytes, float]:
        events = await provider.open_stream(upstream_call(ctx, body, deployment))
        try:
            first = await anext(events)
        except StopAsyncIteration:
            raise UpstreamFailure(f"{deployment.label}: empty stream") from None
        except BaseException:
            await close_stream(events)
            raise
        return events, first, deadline

    deployment, (events, first, deadline) = await _first_answer(
        ctx, route, services, attempt, guards, ids, streamed=True
    )
    options = body.get("stream_options")
    observer = UsageObserver(
        ctx.endpoint,
        client_wants_usage=isinstance(options, Mapping) and options.get("include_usage") is True,
        body=body,  # counted when the upstream reports no usage
        model=deployment.model,
    )
    # Guard output holds back, rewrites and may cut the stream; the observer sees only what
    # the client got. What the upstream generated is counted from a copy taken before it.
    tap = UpstreamTap() if guards.checks_output else None
    steps: list[Step] = []
    if current_trace() is not None:  # telemetry: id, model, finish reasons, for its spans
        steps.append(StreamFacts(ctx))  # (untraced, a step less per chunk: ~2 µs each)
    if tap is not None:
        steps.append(tap)
    if ids is not None:  # the id goes out before any usage: it carries the reservation
        bound = reserved_tokens(ctx, ids.carried_tokens)
        steps.append(ResponseIdRewriter(ids, deployment, bound, services.response_sizes))
    # response cache: sees what the upstream sent (the whole-answer rules judge it before
    # it is stored: its hits are served whole too), and the usage chunk the observer strips.
    assembler = StreamAssembler(ctx.endpoint) if cache_flow.stores(ctx, plan) else None
    if assembler is not None:
        steps.append(assembler)
    if guards.checks_output:  # guard output: scanned as it flows, before the observer
        is_json = asks_for_json(ctx.endpoint, body)  # JSON text: redacted so it stays JSON
        steps.append(OutputScanner(guards.output, ctx.endpoint, ctx.guardrail_hits, is_json))
    if ctx.logs_content:  # what the client gets, after the scanner: for its access line
        steps.append(AnswerText(ctx))
    steps.append(observer)

    end_event = ctx.stream_error_event = _error_event_of(ctx.endpoint)
    numbering = end_event if isinstance(end_event, ResponsesErrorEvent) else None

    def booked_event(error: GatewayError) -> bytes:
        """The stream's own error event (a guardrail's block, a broken or late upstream),
        booked as it goes out: the SDK raises at it and hangs up, often before the relay
        is over, and that client left because of this error, not of its own (no 499)."""
        _book_stream_error(ctx, error)
        return end_event(error)

    sent: deque[bytes] = deque(maxlen=SENT_KEPT)  # the last writes, for a client gone at them

    async def send(data: bytes) -> None:
        if ctx.first_byte_s is None:
            ctx.first_byte_s = ctx.elapsed_s()
        if numbering is not None:  # Responses: our error event follows the last number sent
            numbering.seen(data)
        await exchange.send(data)
        sent.append(data)

    remaining_s = deadline - health.clock()
    # The deadline holds while the client reads too. The relay ends a stream that reaches
    # it mid-read (an error event); this cuts one stuck writing to a client too slow to
    # take it, which would otherwise hold the stream, and its limits, past their lease.
    client_deadline = asyncio.timeout(max(0.0, remaining_s) + CLIENT_GRACE_S)
    whole = None  # response cache: the completed answer, stored once it is charged
    end: StreamEnd | None = None

    async def charge_once() -> None:  # `ctx.usage` set: charged already
        if ctx.usage is None:
            charge(ctx, deployment, await _stream_usage(ctx, observer, tap, body, deployment, ids))

    async def settle_now() -> None:
        """Charged and settled before the client sees the end: its next request, sent
        then, must find the concurrency slot free (counting may await a thread)."""
        await charge_once()
        settle_limits(ctx, services)

    try:
        async with client_deadline:
            await exchange.start_stream(SSE_HEADERS + _answer_headers(ctx))
            end = await relay(
                first,
                events,
                Chain(steps),
                send,
                idle_timeout_s=route.routing.attempt_timeout_s,
                deadline_in_s=remaining_s,
                error_event=booked_event,
                before_done=settle_now,
            )
            if end.failure is not None:
                health.failed(deployment, route, end.failure)
                log_failed_attempt(ctx.request_id, deployment, end.failure)  # as before a byte
            elif end.error is None:  # the whole stream came: the deployment's success
                health.succeeded(deployment)
            if end.error is not None:  # booked already, unless the upstream's own event went out
                _book_stream_error(ctx, end.error)
            await settle_now()  # (a stream without `[DONE]`: Responses, or cut by an error)
            await exchange.end_stream()
            # Not in `finally`: a disconnect cancels the task and must store nothing.
            whole = assembler.answer() if assembler and end.error is None else None
    except asyncio.CancelledError:
        # The SDK raises at the upstream's error event and hangs up at once, before the
        # upstream's [DONE] or close: the request failed upstream all the same.
        if end is None and ctx.outcome is Outcome.OK and ends_on_error(sent):  # not ours
            _book_upstream_failure(ctx, health, deployment, route, "stream ended on its error")
        raise
    except TimeoutError:
        if not client_deadline.expired():
            raise
        # Not ended: the server closes the connection (nothing more can reach this client).
        ctx.end(408, Outcome.CLIENT_DISCONNECTED, CLIENT_TOO_SLOW)
        log.warning(
            "stream cut: the client did not read it within the request deadline",
            extra={"fields": {"request_id": ctx.request_id}},
        )
    finally:
        await close_stream(events)  # already closed unless starting the response failed
        await charge_once()  # cut short: charged for what was generated all the same
    if plan is not None and whole is not None:  # ended with [DONE], every finish_reason
        await cache_flow.keep_stream(
            ctx, services.cache, plan, whole, deployment.label, guards=guards, body=body
        )


async def _stream_usage(
    ctx: RequestContext,
    observer: UsageObserver,
    tap: UpstreamTap | None,
    body: Mapping[str, Any],
    deployment: Deployment,
    ids: ResponseIds | None,
) -> Usage:
    """What a stream's upstream generated: its usage report, else counted here."""
    usage = observer.reported
    if usage is None and tap is not None:  # a usage chunk past a guardrail's cut counts
        usage = await asyncio.to_thread(tap.usage, ctx.endpoint, body, deployment.model)
        observer.counted(usage)  # the client's usage chunk, if it asked: the same count
    elif usage is None:
        usage = await asyncio.to_thread(observer.estimate)
    if ids is not None and ids.carried_tokens and usage.is_estimated:
        usage = _with_carried(usage, ids.carried_tokens)  # counted from the new input
    return usage


async def _answer_from_cache(
    ctx: RequestContext, exchange: Exchange, hit: cache_flow.Hit, route: ModelRoute
) -> None:
    """A response-cache hit: the stored answer as this client asked for it (a stream
    is replayed in one write); no upstream call, nothing charged (`ctx.usage` stays None).
    The deployment that answered when it was stored is the request's, for its header,
    ledger row and access line (the key holds the route's deployments: it is found)."""
    ctx.saved_usage = hit.saved
    ctx.guardrail_hits.extend(hit.guardrails)  # the output rules that shaped the stored answer
    ctx.deployment = cache_flow.deployment_of(hit, route)
    if current_trace() is not None:  # telemetry: the id, model, finish reasons it carries
        stored = orjson.loads(hit.whole) if hit.whole else {}
        ctx.response_id, ctx.response_model, ctx.finish_reasons = response_facts(stored)
    headers = _answer_headers(ctx)
    if ctx.is_stream:
        # A replay knows its usage before the first byte: it says whether it was counted.
        await exchange.start_stream(SSE_HEADERS + headers + [_estimated_header(ctx)])
        ctx.first_byte_s = ctx.elapsed_s()
        await exchange.send(hit.data)
        await exchange.end_stream()
    else:
        await exchange.answer(200, hit.data, JSON_HEADERS + headers + _cost_headers(ctx))


def _book_upstream_failure(
    ctx: RequestContext, health: HealthBoard, deployment: Deployment, route: ModelRoute, detail: str
) -> None:
    """The upstream's own failure reached the client in a 200 (its error event, a failed
    Responses object): the records and the deployment's health say it failed."""
    health.failed(deployment, route, UpstreamFailure(f"{deployment.label}: {detail}"))
    error = UpstreamUnavailable("The upstream failed.")
    ctx.end(error.status, Outcome.UPSTREAM_ERROR, error.code)


def charge(ctx: RequestContext, deployment: Deployment, usage: Usage) -> None:
    """The request's usage, priced exactly at what the answering deployment charges for
    it: at the service tier the answer reports, past the prompt's size threshold (a
    table's prices); the ledger row keeps those unit prices. Its output is at most what
    the request could generate (`within_output_cap`)."""
    usage = within_output_cap(usage, _output_bound(ctx))
    prices = charged_prices(deployment.prices, usage.service_tier, usage.input_tokens)
    ctx.usage, ctx.prices = usage, prices
    ctx.cost_nanousd = cost_nanousd(usage, prices)


def _output_bound(ctx: RequestContext) -> int | None:
    """The most output the forwarded request allows: its largest output cap times its
    choices (and a completions batch's prompts); None when it sets no cap."""
    body = ctx.request_body
    if not isinstance(body, dict) or largest_cap(body) < 0:
        return None
    return output_allowance(ctx.endpoint, body, None)


# --- rendering helpers ---------------------------------------------------------


def _book_stream_error(ctx: RequestContext, error: GatewayError) -> None:
    """The records carry a stream's error event's status (its 200 went out long before)."""
    ctx.end(error.status, _outcome_of(error), error.code)
    ctx.error_detail = error.detail


def _outcome_of(error: GatewayError) -> Outcome:
    if isinstance(error, ShuttingDown):
        return Outcome.REFUSED  # said no on purpose: the client retries another replica
    if isinstance(error, NotCached):
        return Outcome.REFUSED  # a 504 the client asked for (only-if-cached), not our fault
    if isinstance(error, UpstreamUnavailable | UpstreamTimeout):
        return Outcome.UPSTREAM_ERROR
    return outcome_of_status(error.status)


def _answer_headers(ctx: RequestContext) -> Headers:
    headers = [(b"x-request-id", ctx.request_id.encode())]
    if ctx.deployment is not None:
        headers.append((b"x-gateway-deployment", ctx.deployment.label.encode()))
        upstream_id = upstream_request_id(ctx.deployment.provider)  # none on a cache hit
        if upstream_id is not None:
            headers.append((b"x-upstream-request-id", upstream_id))
    headers += cache_flow.headers(ctx)  # response cache (issue 14): x-gateway-cache
    return headers + limits_headers(ctx)  # limits: x-ratelimit-* (issue 9)


def _cost_headers(ctx: RequestContext) -> Headers:
    """A whole answer's cost, and whether its tokens were counted here (not reported)."""
    return [(b"x-gateway-cost-usd", usd_text(ctx.cost_nanousd).encode()), _estimated_header(ctx)]


def _estimated_header(ctx: RequestContext) -> tuple[bytes, bytes]:
    """Were the answer's tokens counted here? A cache hit's are those its entry was
    charged (`saved_usage`): counted when the upstream that answered sent no usage,
    as its ledger row says."""
    usage = ctx.recorded_usage
    estimated = usage is not None and usage.is_estimated
    return b"x-gateway-tokens-estimated", b"true" if estimated else b"false"


def _error_event_of(endpoint: Endpoint) -> ErrorEvent:
    """How this endpoint's stream tells its client an error once its status line is out."""
    return ResponsesErrorEvent() if endpoint == "responses" else error_event


def _error_headers(ctx: RequestContext, error: GatewayError) -> Headers:
    headers = JSON_HEADERS + [(k.encode(), v.encode()) for k, v in error.headers.items()]
    headers.append((b"x-request-id", ctx.request_id.encode()))
    # A 4xx names the deployment that refused; a routing 502/504 the last one tried.
    routed = error.status < 500 or isinstance(error, UpstreamUnavailable | UpstreamTimeout)
    if ctx.deployment is not None and routed:
        headers.append((b"x-gateway-deployment", ctx.deployment.label.encode()))
        if isinstance(error, UpstreamRejected):  # the upstream's own refusal, relayed
            upstream_id = upstream_request_id(ctx.deployment.provider)
            if upstream_id is not None:
                headers.append((b"x-upstream-request-id", upstream_id))
    # Response cache: an answer refused or failed after the lookup (by a limit, the
    # upstream, an output rule, every deployment down) says how the cache saw it, as its
    # ledger row does; none before the lookup, nor for a hit a limit refused (ctx.cache
    # None: it was not served from the cache, nor a miss).
    headers += cache_flow.headers(ctx)
    return headers  # limits: _refuse adds refusal_limits_headers (issue 9)
