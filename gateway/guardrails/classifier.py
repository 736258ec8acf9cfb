"""External classifier rules: post the request's text to a moderations-shaped
endpoint and compare its score with the rule's threshold.

The wire shape is OpenAI's `POST /v1/moderations` (`{"model", "input"}` →
`{"results": [{"flagged", "category_scores"}]}`), which a provider of the bundle
serves at `{api_base}/moderations` and which self-hosted classifiers (Llama Guard,
prompt-injection models behind a small server) commonly copy. The score is the
highest category score, or 1.0/0.0 from `flagged` when there are none.

`score_of` and `classifier_decision` are pure; `Classifiers` is the thin adapter
(one aiohttp session, opened on first use, closed in the lifespan).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aiohttp

from gateway.guardrails.guards import ClassifierRule
from gateway.guardrails.kinds import FailMode
from gateway.policy.upstreams import UpstreamRules
from gateway.providers.resolver import GuardedResolver
from gateway.providers.upstream_connections import GuardedConnector


@dataclass(frozen=True, slots=True)
class Score:
    value: float


@dataclass(frozen=True, slots=True)
class Unanswered:
    why: str  # "timed out after 2.0 s", "HTTP 500", "not a moderations answer"


def score_of(payload: Any) -> float | None:
    """The classifier's score from a moderations answer (None when it is not one)."""
    if not isinstance(payload, Mapping):
        return None
    results = payload.get("results")
    if not isinstance(results, list) or not results or not isinstance(results[0], Mapping):
        return None
    first = results[0]
    scores = first.get("category_scores")
    if isinstance(scores, Mapping):
        values = [
            float(v)
            for v in scores.values()
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        if values:
            return max(values)
    flagged = first.get("flagged")
    if isinstance(flagged, bool):
        return 1.0 if flagged else 0.0
    return None


class Verdict(StrEnum):
    """What one classifier rule decided, as the guard stage reads it."""

    PASS = "pass"
    FIRE = "fire"  # score at or over the threshold: the rule's action applies
    UNCHECKED_OPEN = "unchecked_open"  # could not answer, fails open: flagged
    UNCHECKED_CLOSED = "unchecked_closed"  # could not answer, fails closed: refused


def classifier_decision(rule: ClassifierRule, answer: Score | Unanswered) -> Verdict:
    if isinstance(answer, Unanswered):
        return (
            Verdict.UNCHECKED_OPEN if rule.on_error is FailMode.OPEN else Verdict.UNCHECKED_CLOSED
        )
    return Verdict.FIRE if answer.value >= rule.threshold else Verdict.PASS


class Classifiers:
    """Posts texts to classifier endpoints; every failure is an `Unanswered`, never raised."""

    def __init__(self, upstreams: UpstreamRules | None = None) -> None:
        """`upstreams`: the rules a classifier's resolved address must pass at connect
        time, as a provider's must (a name resolving to a metadata address is refused)."""
        self._upstreams = upstreams
        self._session: aiohttp.ClientSession | None = None

    async def score(self, rule: ClassifierRule, text: str) -> Score | Unanswered:
        if self._session is None or self._session.closed:
            connector = None
            if self._upstreams is not None:
                resolver = GuardedResolver(self._upstreams)
                connector = GuardedConnector(resolver=resolver)
            self._session = aiohttp.ClientSession(connector=connector)
        headers = {"authorization": f"Bearer {rule.api_key}"} if rule.api_key else {}
        try:
            async with asyncio.timeout(rule.timeout_s):
                # Never to where a redirect points (a provider's call and the JWKS fetch
                # refuse them too): the prompt would go to a host the policy never named.
                async with self._session.post(
                    rule.url,
                    json={"model": rule.model, "input": text},
                    headers=headers,
                    allow_redirects=False,
                ) as response:
                    if response.status != 200:
                        return Unanswered(f"HTTP {response.status}")
                    payload = await response.json(content_type=None)
        except TimeoutError:
            return Unanswered(f"timed out after {rule.timeout_s:g} s")
        except (aiohttp.ClientError, ValueError) as error:
            return Unanswered(type(error).__name__)
        value = score_of(payload)
        return Unanswered("not a moderations answer") if value is None else Score(value)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
