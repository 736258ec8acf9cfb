"""What the built-in mock answers, decided from the request body: the reply text, cut
to the caller's output cap, how many choices, which inputs. Pure: no I/O, no clock.

It answers as OpenAI would: a cap cuts the reply at that many tokens (counted with
the tokenizer the mock reports usage with), `n` asks for that many choices, a
completions prompt list is one prompt per item, an embeddings list of token ids is
one input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.limits.token_count import count_text, encoding_for
from gateway.providers.base import Endpoint

# The choices (prompts x n) one request may ask of the mock: the gateway allows n <= 128
# and a prompt list as long as 16 MiB holds, and each choice costs a tokenizer pass.
MAX_CHOICES = 4096
# The fields that cap an endpoint's output at OpenAI (chat takes the older name too).
OWN_CAPS: Mapping[Endpoint, tuple[str, ...]] = {
    "chat": ("max_completion_tokens", "max_tokens"),
    "completions": ("max_tokens",),
    "responses": ("max_output_tokens",),
}
ECHOED_CHARS = 120
HEAD_CHARS = 4096


@dataclass(frozen=True, slots=True)
class Cut:
    """A reply after its cap: the text returned, its tokens, and whether it was cut."""

    text: str
    tokens: int
    is_cut: bool


def cut_to_tokens(text: str, cap: int | None, model: str) -> Cut:
    """`text`, or its longest prefix of at most `cap` tokens (None: no cap).

    A cut never splits a character: bytes of a half-decoded one are dropped. The
    prefix is counted again, since a prefix can tokenize differently from the
    tokens it was cut from; `tokens` is always `count_text` of the text returned."""
    encoder = encoding_for(model)
    tokens = encoder.encode(text, disallowed_special=())
    if cap is None or len(tokens) <= cap:
        return Cut(text, len(tokens), False)
    for keep in range(max(cap, 0), 0, -1):
        prefix = encoder.decode_bytes(tokens[:keep]).decode("utf-8", errors="ignore")
        counted = count_text(prefix, model)
        if counted <= cap:
            return Cut(prefix, counted, True)
    return Cut("", 0, True)


def output_cap(endpoint: Endpoint, body: Mapping[str, Any]) -> int | None:
    """The endpoint's own output cap (the smallest, if chat sets both names); None: none.
    Another endpoint's cap field is ignored, as OpenAI ignores it."""
    caps = [
        int(value)
        for name in OWN_CAPS.get(endpoint, ())
        if isinstance(value := body.get(name), int | float) and not isinstance(value, bool)
    ]
    return min(caps) if caps else None


def choice_count(body: Mapping[str, Any]) -> int:
    """`n`: the choices per prompt (api/fields.py checked it is 1..128)."""
    n = body.get("n")
    if isinstance(n, int | float) and not isinstance(n, bool) and n >= 1:
        return int(n)
    return 1


def completion_prompts(prompt: Any) -> list[Any]:
    """The prompts of a completions body: each string or token list of a list is one
    (limits/estimate.py reserves for as many); a string, a list of token ids, or no
    prompt is one."""
    if isinstance(prompt, list):
        batch = [item for item in prompt if isinstance(item, str | list)]
        if batch:
            return batch
    return [prompt]


def embedding_inputs(value: Any) -> list[Any]:
    """The inputs of an embeddings body: a flat list of token ids is one tokenized
    input; any other list is one input per item."""
    if not isinstance(value, list):
        return [value]
    if value and all(isinstance(item, int) and not isinstance(item, bool) for item in value):
        return [value]
    return value


def last_user_text(body: Mapping[str, Any]) -> str:
    """What the caller said last: a chat's last user message, else the prompt or input."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, Mapping) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return shown(body.get("prompt", body.get("input", "")))


def shown(said: Any) -> str:
    """A prompt as text: a string as it is, anything else (token ids) as its JSON."""
    return said if isinstance(said, str) else orjson.dumps(said).decode()


def reply_text(said: str) -> str:
    """The mock's whole reply to `said`: a fixed sentence echoing its head."""
    # Only the first 120 characters are echoed: a multi-megabyte prompt is not split
    # whole on the event loop (the head of the text says the same, unless it is
    # nearly all whitespace).
    echoed = " ".join(said[:HEAD_CHARS].split())
    if len(echoed) <= ECHOED_CHARS and len(said) > HEAD_CHARS:
        echoed = " ".join(said.split())
    if len(echoed) > ECHOED_CHARS:
        echoed = echoed[: ECHOED_CHARS - 3] + "..."
    return (
        f"This is the mock provider. You said: {echoed}" if echoed else "This is the mock provider."
    )


def finish_reason(cut: Cut) -> str:
    return "length" if cut.is_cut else "stop"
