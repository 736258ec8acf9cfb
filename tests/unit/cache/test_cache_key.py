"""The cache key (gateway/cache/key.py): same question, same key; never across teams."""

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from gateway.cache.key import cache_key, canonical_body
from gateway.policy.compiled import Deployment, guardrails_hash
from gateway.policy.schema import GuardrailProfile, GuardrailRule

DEPLOYMENTS = (Deployment("openai", "gpt-4o", 1.0, 1), Deployment("local", "llama", 1.0, 2))
BODY: dict[str, Any] = {
    "model": "chat",
    "messages": [{"role": "user", "content": "Hello"}],
    "temperature": 0,
    "max_tokens": 50,
}


def key(**changes: Any) -> str:
    parts: dict[str, Any] = {
        "team": "search",
        "endpoint": "chat",
        "model": "chat",
        "deployments": DEPLOYMENTS,
        "guardrails": "",
        "body": BODY,
    }
    parts.update(changes)
    return cache_key(**parts).digest


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
bodies = st.dictionaries(st.text(max_size=8), json_values, max_size=6)


def shuffled(value: Any, seed: int) -> Any:
    """The same JSON value with every object's keys in another order."""
    if isinstance(value, dict):
        items = list(value.items())
        if items:
            cut = seed % len(items)
            items = items[cut:] + items[:cut]
            items.reverse()
        return {k: shuffled(v, seed + 1) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, seed) for v in value]
    return value


@given(bodies, st.integers(0, 100), st.booleans())
def test_key_order_and_whitespace_do_not_split_entries(
    body: dict[str, Any], seed: int, indent: bool
) -> None:
    """A request differing only in key order or whitespace gets the same key."""
    reordered = shuffled(body, seed)
    option = orjson.OPT_INDENT_2 if indent else 0
    reparsed = orjson.loads(b"  \n" + orjson.dumps(reordered, option=option) + b"\n\t")
    assert key(body=body) == key(body=reparsed)


@given(bodies, st.text(min_size=1, max_size=10), st.text(min_size=1, max_size=10))
def test_different_teams_never_share_a_key(body: dict[str, Any], one: str, other: str) -> None:
    if one != other:
        assert key(team=one, body=body) != key(team=other, body=body)


def test_stream_options_and_the_end_user_do_not_split_entries() -> None:
    """Streamed or whole, for whichever end user: the same answer."""
    delivered = {
        **BODY,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "alice",
        "safety_identifier": "hashed-alice",
    }
    assert key(body=delivered) == key(body=BODY)


def test_each_part_that_shapes_the_answer_splits_entries() -> None:
    base = key()
    others = {
        key(endpoint="completions"),
        key(model="other"),
        key(deployments=DEPLOYMENTS[:1]),
        key(deployments=(Deployment("openai", "gpt-4o-mini", 1.0, 1),)),
        key(guardrails="0" * 64),
        key(body={**BODY, "temperature": 1}),
        key(body={**BODY, "messages": [{"role": "user", "content": "Hello!"}]}),
        key(body={**BODY, "seed": 3}),
    }
    assert base not in others
    assert len(others) == 8


def test_price_weight_and_priority_do_not_split_entries() -> None:
    """A price or routing-weight change keeps the entries; the labels are what answer."""
    reweighted = (Deployment("local", "llama", 5.0, 1), Deployment("openai", "gpt-4o", 2.0, 3))
    assert key(deployments=reweighted) == key()


def test_parts_cannot_run_into_each_other() -> None:
    """team 'ab' + model 'c' is not team 'a' + model 'bc'."""
    assert key(team="ab", model="c") != key(team="a", model="bc")


def test_canonical_body_leaves_out_delivery_options() -> None:
    body = {"b": 1, "a": {"y": 2, "x": 1}, "stream": True, "user": "u", "model": "m"}
    assert canonical_body(body) == b'{"a":{"x":1,"y":2},"b":1}'


def test_n_of_one_is_the_request_without_n() -> None:
    """`n: 1` is OpenAI's default: the same key as no `n` on chat and completions; any
    other spelling (1.0, true, 2) and `n` on embeddings (which has none) stay apart."""
    assert key(body={**BODY, "n": 1}) == key()
    assert key(endpoint="completions", body={"prompt": "hi", "n": 1}) == key(
        endpoint="completions", body={"prompt": "hi"}
    )
    for other in (1.0, True, 2, "1"):
        assert key(body={**BODY, "n": other}) != key()
    embed = {"input": "hi"}
    assert key(endpoint="embeddings", body={**embed, "n": 1}) != key(
        endpoint="embeddings", body=embed
    )


def test_editing_a_guardrail_rule_changes_the_fingerprint() -> None:
    """A policy change to a guardrail profile makes the old entries unreachable."""
    block = GuardrailProfile(input=[GuardrailRule(detector="email", action="block")])
    redact = GuardrailProfile(input=[GuardrailRule(detector="email", action="redact")])
    one = guardrails_hash(["baseline"], {"baseline": block})
    two = guardrails_hash(["baseline"], {"baseline": redact})
    assert one != two
    assert guardrails_hash(["baseline"], {"baseline": block}) == one
    assert guardrails_hash([], {"baseline": block}) != one
    assert key(guardrails=one) != key(guardrails=two)


def test_the_key_names_its_team_and_model() -> None:
    found = cache_key(
        team="search",
        endpoint="chat",
        model="chat",
        deployments=DEPLOYMENTS,
        guardrails="",
        body=BODY,
    )
    assert (found.team, found.model, len(found.digest)) == ("search", "chat", 64)
