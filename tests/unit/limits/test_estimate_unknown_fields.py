"""Text a request carries outside the fields the estimate knows (black-box probe: vLLM's
`documents`, `chat_template`, a key of a message's own) is forwarded as sent and may be
put in the prompt: the estimate counts it, so no budget is passed by hiding a prompt
there. Fields known to hold no text (settings, caps, ids) still count nothing."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.limits.estimate import estimate_inline, estimate_now
from gateway.limits.token_count import SETTINGS_FIELDS, count_text
from gateway.policy.compiled import Deployment, ModelRoute, RoutingConfig

ROUTE = ModelRoute("m", (Deployment("a", "gpt-4o", 1, 1),), RoutingConfig(), None)
HIDDEN = " ".join(f"secret plan number {i} for the quarter" for i in range(60))
HIDDEN_TOKENS = count_text(HIDDEN, "gpt-4o")
CHAT: dict[str, Any] = {
    "model": "m",
    "max_tokens": 10,
    "messages": [{"role": "user", "content": "hi"}],
}
BODIES: dict[str, dict[str, Any]] = {
    "chat": CHAT,
    "completions": {"model": "m", "max_tokens": 10, "prompt": "hi"},
    "embeddings": {"model": "m", "input": "hi"},
    "responses": {"model": "m", "max_output_tokens": 10, "input": "hi"},
}


def tokens(endpoint: str, body: dict[str, Any]) -> int:
    inline = estimate_inline(endpoint, body, ROUTE, None)  # type: ignore[arg-type]
    whole = estimate_now(endpoint, body, ROUTE, None)  # type: ignore[arg-type]
    assert inline is None or inline == whole  # the two paths agree
    return whole.tokens


@pytest.mark.parametrize("endpoint", sorted(BODIES))
@pytest.mark.parametrize(
    "hidden",
    [
        {"documents": [{"title": "q3", "text": HIDDEN}]},
        {"chat_template": HIDDEN},
        {"chat_template_kwargs": {"context": HIDDEN}},
        {"a_field_no_one_knows": HIDDEN},
    ],
    ids=["documents", "chat_template", "chat_template_kwargs", "unknown"],
)
def test_text_in_a_field_the_estimate_does_not_know_is_counted(
    endpoint: str, hidden: dict[str, Any]
) -> None:
    body = BODIES[endpoint]
    assert tokens(endpoint, {**body, **hidden}) >= tokens(endpoint, body) + HIDDEN_TOKENS


@pytest.mark.parametrize("endpoint", ["chat", "responses"])
def test_text_in_a_messages_own_key_is_counted(endpoint: str) -> None:
    message = {"role": "user", "content": "hi"}
    field = "messages" if endpoint == "chat" else "input"
    body = {**BODIES[endpoint], field: [message]}
    hidden = {**body, field: [{**message, "context": HIDDEN}]}
    assert tokens(endpoint, hidden) >= tokens(endpoint, body) + HIDDEN_TOKENS


def test_a_legacy_function_call_is_counted() -> None:
    call = {
        "role": "assistant",
        "content": None,
        "function_call": {"name": "f", "arguments": HIDDEN},
    }
    body = {**CHAT, "messages": [*CHAT["messages"], call]}
    assert tokens("chat", body) >= tokens("chat", CHAT) + HIDDEN_TOKENS


def test_settings_and_ids_count_nothing() -> None:
    settings = {
        "temperature": 0.5,
        "top_p": 0.9,
        "seed": 7,
        "user": "someone-with-a-long-identifier-" * 20,
        "metadata": {"purpose": "x" * 500},
        "stream": False,
        "service_tier": "default",
    }
    assert set(settings) <= SETTINGS_FIELDS
    assert tokens("chat", {**CHAT, **settings}) == tokens("chat", CHAT)
    item = {
        "type": "message",
        "id": "msg_" + "a" * 200,
        "status": "completed",
        "role": "user",
        "content": "hi",
    }
    base = {**BODIES["responses"], "input": [{"type": "message", "role": "user", "content": "hi"}]}
    assert tokens("responses", {**base, "input": [item]}) == tokens("responses", base)
