"""Whether an upstream stream that closed without `[DONE]` had ended: pure, on bytes.

Looked at only at the close (and, for a request of several choices, at the chunks
that finish one): nothing per ordinary chunk. A byte search picks the chunks worth
parsing; the parsed events decide, so text inside an event (a tool schema the
upstream echoes, `{"type": "response.completed"}` as a default) cannot end a stream.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from gateway.providers.base import Endpoint
from gateway.sse import events_of, json_of

RESPONSES_TERMINAL: Final = frozenset(
    {"response.completed", "response.failed", "response.incomplete"}
)


def expected_choices(endpoint: Endpoint, body: Mapping[str, Any]) -> int:
    """The choices a chat or completions answer holds: `n` (1 when unset), times the
    prompts of a completions batch (each prompt gets `n`)."""
    n = body.get("n")
    count = n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1
    if endpoint == "completions":
        prompt = body.get("prompt")
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
            count *= len(prompt)
    return count


def finished_choices(chunk: bytes) -> set[int]:
    """The indexes of the choices an event of `chunk` gives a `finish_reason`."""
    found: set[int] = set()
    for event in events_of(chunk):
        parsed = json_of(event)
        choices = parsed.get("choices") if isinstance(parsed, dict) else None
        if not isinstance(choices, list):
            continue
        for choice in choices:
            if isinstance(choice, dict) and choice.get("finish_reason") is not None:
                index = choice.get("index", 0)
                if isinstance(index, int):
                    found.add(index)
    return found


def responses_ended(chunks: Iterable[bytes]) -> bool:
    """Is an event of `chunks` terminal (completed, failed, incomplete): its JSON's own
    `type`, or, when its JSON has none, its `event:` line?"""
    for chunk in chunks:
        for event in events_of(chunk):
            parsed = json_of(event)
            if not isinstance(parsed, dict):
                continue
            kind = parsed.get("type")
            if kind is None:
                kind = _event_name(event)
            if kind in RESPONSES_TERMINAL:
                return True
    return False


def _event_name(event: bytes) -> str | None:
    for line in event.split(b"\n"):
        if line.startswith(b"event:"):
            return line[6:].strip().decode(errors="replace")
    return None
