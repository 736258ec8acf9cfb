"""The cache key: which requests are the same request, for one team. Pure, no I/O.

A key is SHA-256 over, in order: a format version, the endpoint, the model alias,
the route's deployments (provider/model labels, sorted), the guardrail profiles
that shape the answer (`TeamRules.guardrails_hash`, computed once at policy
compile: names and rules), and the request body in canonical form (delivery options
and explicit defaults such as `n: 1` left out). The team is both hashed and kept
beside the digest, so two teams never share an entry, even for identical requests.
Price, limits and budgets do not shape an answer and stay out: a price change keeps
the entries; a change to the route or to a guardrail profile makes the old ones
unreachable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.policy.compiled import Deployment
from gateway.providers.base import Endpoint

KEY_FORMAT = b"gateway-cache-v1"
# Delivery options, not part of the question: the same answer streamed or whole, to
# whichever end user (`user` and its successor `safety_identifier` only label the
# caller for the provider's abuse reports; the model never sees them).
IGNORED_FIELDS = frozenset({"stream", "stream_options", "user", "safety_identifier", "model"})
# Fields whose explicit default asks exactly what their absence asks, on the endpoints
# where that default is documented: `n: 1` is one choice, as no `n` is (OpenAI's
# default). Left out of the key only; the forwarded body keeps what the client sent.
# Not on embeddings, which has no `n`: an upstream may refuse it there.
DEFAULT_VALUES: dict[Endpoint, dict[str, int]] = {"chat": {"n": 1}, "completions": {"n": 1}}


@dataclass(frozen=True, slots=True)
class CacheKey:
    """Where one answer lives: its team and model (to clear by), and the digest."""

    team: str
    model: str
    digest: str  # sha256 hex
    # Whose max_bytes bounds it: "" the team's policy (all its models share that cap), or
    # the alias of a model with a policy of its own (each team's entries of that model).
    pool: str = ""

    def __str__(self) -> str:
        return f"{self.team}/{self.model}/{self.digest}"


def canonical_body(body: Mapping[str, Any], endpoint: Endpoint = "chat") -> bytes:
    """The body as compact JSON with sorted keys, delivery options and fields set to
    their default (DEFAULT_VALUES) left out.

    Key order and whitespace vanish with parsing; numbers keep their spelling
    (`1` and `1.0` are different requests, as an upstream may treat them; only the
    integer `1` is `n`'s default, never `1.0` or `true`).
    """
    defaults = DEFAULT_VALUES.get(endpoint, {})
    kept = {
        name: value
        for name, value in body.items()
        if name not in IGNORED_FIELDS and not _is_default(defaults, name, value)
    }
    return orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)


def _is_default(defaults: Mapping[str, int], name: str, value: Any) -> bool:
    return name in defaults and type(value) is int and value == defaults[name]


def cache_key(
    *,
    team: str,
    endpoint: Endpoint,
    model: str,
    deployments: Sequence[Deployment],
    guardrails: str,
    body: Mapping[str, Any],
) -> CacheKey:
    """The key of this request for this team (see the module docstring for the parts)."""
    labels = sorted({deployment.label for deployment in deployments})
    digest = hashlib.sha256()
    for part in (
        KEY_FORMAT,
        team.encode(),
        endpoint.encode(),
        model.encode(),
        orjson.dumps(labels),
        guardrails.encode(),
        canonical_body(body, endpoint),
    ):
        # Length-prefixed, so no two different lists of parts hash the same bytes.
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return CacheKey(team, model, digest.hexdigest())
