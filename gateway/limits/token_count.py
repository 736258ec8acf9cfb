"""Count tokens locally, for upstreams that report no usage and for estimates.

tiktoken's encodings must load with no network: the files ship inside the
installed litellm wheel (`litellm/litellm_core_utils/tokenizers`, named by the
SHA-1 of their download URL, which is tiktoken's cache layout). We point
tiktoken's cache there while loading, without importing litellm itself.

A prompt's short texts are counted once and remembered (bounded), since they
come back: earlier turns of a conversation, a team's system prompt.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import tiktoken

# OpenAI's chat format costs a few tokens per message beyond its text, and the
# reply is primed with three more (the cookbook's count_tokens_from_messages).
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING_TOKENS = 3
O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")


class EncodingsMissing(RuntimeError):
    """The bundled encodings could not be found; counting would need the network."""


def _bundled_dir() -> Path:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        raise EncodingsMissing("litellm is not installed; its wheel carries tiktoken's encodings")
    return Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"


_LOADING = threading.Lock()
_LOADED: dict[str, tiktoken.Encoding] = {}


def encoding(name: str) -> tiktoken.Encoding:
    """Load an encoding from the bundled files (never the network); once per process."""
    found = _LOADED.get(name)
    if found is not None:
        return found
    # One load at a time: the cache directory is process-wide state (threads running
    # estimates raced on it), and each encoding costs ~40 MiB, so never load one twice.
    with _LOADING:
        found = _LOADED.get(name)
        if found is None:
            found = _LOADED[name] = _load_offline(name)
    return found


def _load_offline(name: str) -> tiktoken.Encoding:
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(_bundled_dir())
    try:
        return tiktoken.get_encoding(name)
    except Exception as exc:  # tiktoken raises plain exceptions when it would download
        raise EncodingsMissing(f"cannot load tiktoken encoding {name} offline") from exc
    finally:
        if previous is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous


@functools.lru_cache(maxsize=256)  # model names come from the policy: few
def _encoding_name(model: str) -> str:
    bare = model.rsplit("/", 1)[-1]
    return "o200k_base" if bare.startswith(O200K_PREFIXES) else "cl100k_base"


def encoding_for(model: str) -> tiktoken.Encoding:
    return encoding(_encoding_name(model))


def count_text(text: str, model: str) -> int:
    if not text:
        return 0
    return len(encoding_for(model).encode(text, disallowed_special=()))


# A prompt's texts up to this long have their count remembered: a conversation re-sends
# its earlier turns with every request and a team its system prompt, and looking a text
# up costs ~0.1 µs where encoding 1 KB costs ~40. Bounded: at most ~4 MB of texts.
REMEMBERED_CHARS = 2048
REMEMBERED_TEXTS = 2048
_remembered: dict[tuple[str, str], int] = {}  # (encoding, text) → tokens, oldest first
_remembering = threading.Lock()  # long prompts are counted on worker threads


def count_prompt_text(text: str, model: str) -> int:
    """count_text for a prompt's text, remembered for texts that come back."""
    return _count_remembered(text, encoding_for(model)) if text else 0


def _count_remembered(text: str, encoder: tiktoken.Encoding) -> int:
    if not text:
        return 0
    if len(text) > REMEMBERED_CHARS:
        return len(encoder.encode(text, disallowed_special=()))
    key = (encoder.name, text)
    found = _remembered.get(key)
    if found is None:
        found = len(encoder.encode(text, disallowed_special=()))
        with _remembering:
            if len(_remembered) >= REMEMBERED_TEXTS:
                del _remembered[next(iter(_remembered))]
            _remembered[key] = found
    return found


def _texts(content: Any) -> Iterable[str]:
    """Text parts of a message `content` (a string, or a list of typed parts)."""
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping):
                text = part.get("text")
                if isinstance(text, str):
                    yield text
            elif isinstance(part, str):
                yield part


def count_messages(messages: Iterable[Any], model: str) -> int:
    return count_messages_with(encoding_for(model), messages)


def count_messages_with(encoder: tiktoken.Encoding, messages: Iterable[Any]) -> int:
    """count_messages with the encoding already found (the limits stage keeps it per route)."""
    remembered, name = _remembered, encoder.name
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += TOKENS_PER_MESSAGE
        if not isinstance(message, Mapping):
            continue
        for key in ("content", "name"):
            value = message.get(key)
            if isinstance(value, str):  # the usual shape: a remembered text, no call
                found = remembered.get((name, value))
                total += found if found is not None else _count_remembered(value, encoder)
            elif value is not None:
                for text in _texts(value):
                    total += _count_remembered(text, encoder)
        tool_calls = message.get("tool_calls")
        if isinstance(tool_calls, list):
            for call in tool_calls:
                function = call.get("function") if isinstance(call, Mapping) else None
                if isinstance(function, Mapping):
                    total += _count_remembered(str(function.get("name", "")), encoder)
                    total += _count_remembered(str(function.get("arguments", "")), encoder)
    return total


def count_prompt(endpoint: str, body: Mapping[str, Any], model: str) -> int:
    """Input tokens of a request body, as the upstream would likely count them."""
    return count_prompt_with(encoding_for(model), endpoint, body)


def count_prompt_with(encoder: tiktoken.Encoding, endpoint: str, body: Mapping[str, Any]) -> int:
    """count_prompt with the encoding already found."""
    if endpoint == "chat":
        messages = body.get("messages")
        return count_messages_with(encoder, messages if isinstance(messages, list) else [])
    field = {"completions": "prompt", "embeddings": "input", "responses": "input"}.get(endpoint)
    value = body.get(field) if field else None
    if isinstance(value, str):
        return _count_remembered(value, encoder)
    if isinstance(value, list):
        if endpoint == "responses":
            return count_messages_with(encoder, value)
        return sum(_count_item(v, encoder) for v in value)
    return 0


def _count_item(item: Any, encoder: tiktoken.Encoding) -> int:
    """One prompt/input item: text, a token id, or a list of token ids."""
    if isinstance(item, str):
        return _count_remembered(item, encoder)
    return len(item) if isinstance(item, list) else 1
