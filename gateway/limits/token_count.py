"""Count tokens locally, for upstreams that report no usage and for estimates.

tiktoken's encodings must load with no network: the files ship inside the
installed litellm wheel (`litellm/litellm_core_utils/tokenizers`, named by the
SHA-1 of their download URL, which is tiktoken's cache layout). We point
tiktoken's cache there while loading, without importing litellm itself.

A prompt's short texts are counted once and remembered (bounded), since they
come back: earlier turns of a conversation, a team's system prompt.

An estimate also counts each image part at its worst case (image_allowance); the
text-only count (count_prompt: a guardrail's max_input_tokens, a local usage count)
does not. Audio and files are counted by neither.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final, overload

import orjson
import tiktoken

# OpenAI's chat format costs a few tokens per message beyond its text, and the
# reply is primed with three more (the cookbook's count_tokens_from_messages).
TOKENS_PER_MESSAGE: Final = 3
REPLY_PRIMING_TOKENS: Final = 3
O200K_PREFIXES: Final = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")


class EncodingsMissing(Exception):
    """The bundled encodings could not be found; counting would need the network."""


def _bundled_dir() -> Path:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        raise EncodingsMissing("litellm is not installed; its wheel carries tiktoken's encodings")
    return Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"


_LOADING: Final = threading.Lock()
_LOADED: Final[dict[str, TextCounter]] = {}  # encoding name → its counter (and memory)


def encoding(name: str) -> tiktoken.Encoding:
    """Load an encoding from the bundled files (never the network); once per process."""
    return text_counter(name).encoder


def text_counter(name: str) -> TextCounter:
    """The process's counter for an encoding (loaded on first use), with its memory."""
    found = _LOADED.get(name)
    if found is not None:
        return found
    # One load at a time: the cache directory is process-wide state (threads running
    # estimates raced on it), and each encoding costs ~40 MiB, so never load one twice.
    with _LOADING:
        found = _LOADED.get(name)
        if found is None:
            found = _LOADED[name] = TextCounter(_load_offline(name))
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
    return text_counter(_encoding_name(model)).encoder


def counter_for(model: str) -> TextCounter:
    return text_counter(_encoding_name(model))


def count_text(text: str, model: str) -> int:
    if not text:
        return 0
    return encoded_length(encoding_for(model), text)


# A text longer than this is encoded in pieces of at most this many characters. tiktoken
# encodes without the GIL but turns the tokens into a Python list holding it: a 15 MB
# prompt's ~4M tokens held it ~0.1 s at a time (an attacker probe saw /healthz wait 3.5 s
# behind twelve of them on worker threads); a piece's list, ~16K tokens, holds it ~1 ms.
PIECE_CHARS: Final = 65_536
# Where to cut a piece: before a space that starts a word (" word": after a character
# that is not whitespace, before a letter). Both encodings' pre-tokenizers split there
# (a word takes the one character before it; a run of letters, digits or punctuation
# ends at a space), and BPE merges only within a pre-token: the pieces' counts add up to
# the whole text's. Looked for among the last WORD_STARTS_TRIED spaces of a piece; a
# piece with none (a long run with no word start: base64, digits) is cut at its end,
# which may count a token or two more or less than the whole text would.
WORD_STARTS_TRIED: Final = 64


def encoded_length(encoder: tiktoken.Encoding, text: str, piece: int = PIECE_CHARS) -> int:
    """len(encoder.encode(text)), special tokens as text, never holding the GIL long."""
    size = len(text)
    if size <= piece:
        return len(encoder.encode(text, disallowed_special=()))
    total = 0
    start = 0
    while start < size:
        end = start + piece
        if end < size:
            cut = _word_start(text, start, end)
            if cut > start:
                end = cut
        else:
            end = size
        total += len(encoder.encode(text[start:end], disallowed_special=()))
        start = end
    return total


def _word_start(text: str, start: int, end: int) -> int:
    """The last index in (start, end) of a space that starts a word; -1 for none among
    the last WORD_STARTS_TRIED spaces. `end` < len(text): text[at + 1] exists."""
    at = text.rfind(" ", start + 1, end)
    for _ in range(WORD_STARTS_TRIED):
        if at <= start:
            return -1
        if not text[at - 1].isspace() and text[at + 1].isalpha():
            return at
        at = text.rfind(" ", start + 1, at)
    return -1


# A prompt's texts up to this long have their count remembered: a conversation re-sends
# its earlier turns with every request (an agent's tool outputs, often tens of KB), a
# team its system prompt; looking a text up costs ~0.1 µs per KB where encoding it costs
# ~40. Bounded by count and by characters, oldest first: at most REMEMBERED_TOTAL_CHARS
# per encoding (two exist: o200k_base, cl100k_base).
REMEMBERED_CHARS: Final = 65_536
REMEMBERED_TEXTS: Final = 4096
REMEMBERED_TOTAL_CHARS: Final = 8 * 2**20


class TextCounter:
    """One encoding and the token counts of the texts it has counted, the latest kept."""

    __slots__ = ("_chars", "_remembering", "chars_kept", "encoder", "remembered", "texts_kept")

    def __init__(
        self,
        encoder: tiktoken.Encoding,
        texts_kept: int = REMEMBERED_TEXTS,
        chars_kept: int = REMEMBERED_TOTAL_CHARS,
    ) -> None:
        self.encoder = encoder
        self.texts_kept, self.chars_kept = texts_kept, chars_kept
        # text → tokens, oldest first; one dict per encoding, so a lookup is keyed by the
        # text itself (its hash is cached on the str), with no key object made per text.
        self.remembered: dict[str, int] = {}
        self._chars = 0  # the remembered texts' characters
        # Long prompts are counted on worker threads: every change to `remembered` holds
        # this; reads need not (a dict get is atomic).
        self._remembering = threading.Lock()

    def count(self, text: str) -> int:
        """Tokens of `text`, remembered when it is not too long (texts come back)."""
        if not text:
            return 0
        if len(text) > REMEMBERED_CHARS:
            return encoded_length(self.encoder, text)
        found = self.remembered.get(text)
        if found is None:
            found = len(self.encoder.encode(text, disallowed_special=()))
            self._remember(text, found)
        return found

    def _remember(self, text: str, tokens: int) -> None:
        size = len(text)
        if size > self.chars_kept:
            return
        remembered = self.remembered
        with self._remembering:
            if text in remembered:  # another thread counted it meanwhile
                return
            while len(remembered) >= self.texts_kept or self._chars + size > self.chars_kept:
                oldest = next(iter(remembered))
                del remembered[oldest]
                self._chars -= len(oldest)
            remembered[text] = tokens
            self._chars += size


def count_prompt_text(text: str, model: str) -> int:
    """count_text for a prompt's text, remembered for texts that come back."""
    return counter_for(model).count(text)


# OpenAI's documented image input cost for gpt-4o-class models (gpt-4o, gpt-4.1, o-series):
# `detail: "low"` costs the base 85 tokens; otherwise (high, auto, absent) the image is
# scaled to fit 2048x2048, then its short side to 768, and each 512-px tile costs 170 more.
# The largest image left is 768x2048: 2 by 4 tiles, so 85 + 170 * 8 = 1,445 tokens at most.
# Models that bill images higher (gpt-4o-mini multiplies its counts; patch-based models
# count otherwise) can still pass a budget by more than text's error (README says so).
IMAGE_BASE_TOKENS: Final = 85
IMAGE_TILE_TOKENS: Final = 170
IMAGE_MAX_TILES: Final = 2 * 4
LOW_DETAIL_IMAGE_TOKENS: Final = IMAGE_BASE_TOKENS
IMAGE_TOKENS: Final = IMAGE_BASE_TOKENS + IMAGE_TILE_TOKENS * IMAGE_MAX_TILES
# The parts that carry an image: chat's `image_url`, the Responses API's `input_image`
# (a message's part or a tool output's), and a computer call output's screenshot.
IMAGE_PART_TYPES: Final = frozenset({"image_url", "input_image", "computer_screenshot"})


def image_allowance(part: Mapping[str, Any]) -> int:
    """The most tokens `part` may cost as an image (0: not an image part). Its `detail`
    is the part's own (Responses) or its `image_url` object's (chat); only "low" is cheap."""
    if part.get("type") not in IMAGE_PART_TYPES:
        return 0
    detail = part.get("detail")
    if detail is None:
        image = part.get("image_url")
        if type(image) is dict or isinstance(image, Mapping):
            detail = image.get("detail")
    return LOW_DETAIL_IMAGE_TOKENS if detail == "low" else IMAGE_TOKENS


def count_messages(messages: Iterable[Any], model: str, images: bool = True) -> int:
    return count_messages_with(counter_for(model), messages, images)


def count_messages_with(counter: TextCounter, messages: Iterable[Any], images: bool = True) -> int:
    """count_messages with the counter already found."""
    return count_messages_within(counter, messages, None, (), images)


# A chat message's or a Responses input item's billed text besides its content: its role
# (the cookbook counts every value of a message: "user" is a token), a name, an
# assistant's refusal, a function call's arguments, a tool's output, a reasoning item's
# summary. Agents send most of their input as tool outputs: none may pass uncounted.
TEXT_FIELDS: Final = ("role", "name", "refusal", "arguments", "output", "summary")
# A message's (or Responses input item's) keys counted above, or holding no text a model
# reads (ids, a status, an image's or a file's data and detail, counted by
# image_allowance or not at all): any other key's value counts as its JSON text (a
# legacy `function_call`, a server's own field), so none passes uncounted.
MESSAGE_KEYS_COUNTED: Final = frozenset(
    {
        *TEXT_FIELDS, "content", "tool_calls", "tool_call_id", "type", "id", "status",
        "call_id", "audio", "detail", "image_url", "file_id", "file_data", "file_url",
        "filename", "input_audio", "encrypted_content", "annotations",
    }
)  # fmt: skip
# A message's `name` costs one token more than its text (the cookbook's tokens_per_name).
TOKENS_PER_NAME: Final = 1


def as_dict(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A body or a message as a dict (a copy only if it is another Mapping, which the
    pipeline never makes): compiled, a dict's `.get` is a direct call, where the Mapping
    protocol's looks the method up by name each time (~40 ns; a short chat request
    makes ~30)."""
    return fields if type(fields) is dict else dict(fields)


@overload
def count_messages_within(
    counter: TextCounter,
    messages: Iterable[Any],
    new_chars: None,
    extras: Iterable[str] = (),
    images: bool = True,
) -> int: ...


@overload
def count_messages_within(
    counter: TextCounter,
    messages: Iterable[Any],
    new_chars: int,
    extras: Iterable[str] = (),
    images: bool = True,
) -> int | None: ...


def count_messages_within(
    counter: TextCounter,
    messages: Iterable[Any],
    new_chars: int | None,
    extras: Iterable[str] = (),
    images: bool = True,
) -> int | None:
    """count_messages_with (plus the `extras`' tokens: extra_texts), or None (having
    tokenized nothing) when the texts not yet remembered add up to more than
    `new_chars` characters (None: no bound).

    The bound is on what would be tokenized: remembered texts cost a lookup however
    long the conversation, and a long new text must be counted off the event loop.
    The walk is one pass, always done here: it costs what a size check would.

    What counts: each message's overhead (and a name's), the text of its `content` and
    TEXT_FIELDS (a string, or a list of strings and typed parts), and each tool call's function name
    and arguments (as str() makes them); with `images`, each image part's (or
    Responses image item's) image_allowance. An image's data is never counted as text."""
    remembered = counter.remembered
    fresh: list[str] = []  # texts with no count yet: tokenized after the walk, if allowed
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        total += TOKENS_PER_MESSAGE
        # `type is dict` first: isinstance against the Mapping ABC costs ~0.1 µs.
        if type(message) is not dict and not isinstance(message, Mapping):
            continue
        fields = as_dict(message)
        content = fields.get("content")
        if content is not None:
            total += _remembered_texts(remembered, content, fresh, images)
        elif images:  # a Responses input item may be an image itself
            total += image_allowance(fields)
        for field in TEXT_FIELDS:
            value = fields.get(field)
            if value is not None:  # before any call: most messages have none but a role
                total += _remembered_texts(remembered, value, fresh, images)
        if fields.get("name") is not None:
            total += TOKENS_PER_NAME
        tool_calls = fields.get("tool_calls")
        if tool_calls is not None:
            total += _remembered_calls(remembered, tool_calls, fresh)
        for key in fields:  # a key no rule above counts (a server's own): its JSON text
            if key not in MESSAGE_KEYS_COUNTED:
                total += _remembered_count(remembered, _as_text(fields[key]), fresh)
    for text in extras:
        total += _remembered_count(remembered, text, fresh)
    if fresh:
        if new_chars is not None and sum(map(len, fresh)) > new_chars:
            return None
        for text in fresh:
            total += counter.count(text)
    return total


def _remembered_texts(
    remembered: dict[str, int], value: Any, fresh: list[str], images: bool
) -> int:
    """_remembered_count of a `content` or a TEXT_FIELDS value: a string, or a list of strings and
    typed parts (their `text`; with `images`, an image part's image_allowance); any other
    value has no text (with `images`, an object may be an image: a computer screenshot)."""
    if isinstance(value, str):
        return _remembered_count(remembered, value, fresh)
    if not isinstance(value, list):
        return image_allowance(value) if images and isinstance(value, Mapping) else 0
    total = 0
    for part in value:
        if type(part) is dict or isinstance(part, Mapping):
            text = part.get("text")
            if isinstance(text, str):
                total += _remembered_count(remembered, text, fresh)
            elif images:  # a part without text: the text parts (most) never get here
                total += image_allowance(part)
        elif isinstance(part, str):
            total += _remembered_count(remembered, part, fresh)
    return total


def _remembered_calls(remembered: dict[str, int], calls: Any, fresh: list[str]) -> int:
    """_remembered_count of each tool call's function name and arguments."""
    if not isinstance(calls, list):
        return 0
    total = 0
    for call in calls:
        if type(call) is not dict and not isinstance(call, Mapping):
            continue
        function = call.get("function")
        if type(function) is dict or isinstance(function, Mapping):
            total += _remembered_count(remembered, str(function.get("name", "")), fresh)
            total += _remembered_count(remembered, str(function.get("arguments", "")), fresh)
    return total


def _as_text(value: Any) -> str:
    """A value as the text it counts as: a string as it is, anything else as JSON."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode() if value is not None else ""


def _remembered_count(remembered: dict[str, int], text: str, fresh: list[str]) -> int:
    """The remembered count of `text`; else 0, and it goes on `fresh` to be counted.
    A text too long to be remembered is not looked up (hashing 100 KB costs ~25 µs)."""
    if len(text) <= REMEMBERED_CHARS:
        found = remembered.get(text)
        if found is not None:
            return found
    if text:
        fresh.append(text)
    return 0


def count_prompt(endpoint: str, body: Mapping[str, Any], model: str) -> int:
    """Input tokens of a request body's text (and token ids), as the upstream would
    likely count them; images are not (count_prompt_with counts them for estimates)."""
    return count_prompt_with(counter_for(model), endpoint, body, images=False)


# Where each endpoint's prompt is (chat's messages are walked as messages).
PROMPT_FIELDS: Final[Mapping[str, str]] = {
    "chat": "messages",
    "completions": "prompt",
    "embeddings": "input",
    "responses": "input",
}


# Billed input besides the prompt: tool definitions (their JSON schemas), a response
# format's schema, the Responses API's system prompt. Left out, a request could carry
# any amount of input that no budget estimate sees.
EXTRA_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "chat": ("tools", "functions", "response_format"),
    "responses": ("instructions", "tools", "text"),
    "completions": ("suffix",),
}


# A request's top-level fields that carry no text a model reads (settings, caps, ids,
# output options), besides its prompt, EXTRA_FIELDS and `prediction`, counted apart. Any
# other field is forwarded as sent, and an upstream may put it in the prompt (vLLM's
# `documents`, `chat_template`, `chat_template_kwargs`): its text counts, on the high side.
SETTINGS_FIELDS: Final = frozenset(
    {
        "model", "stream", "stream_options", "max_tokens", "max_completion_tokens",
        "max_output_tokens", "temperature", "top_p", "n", "stop", "presence_penalty",
        "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "user", "seed",
        "tool_choice", "parallel_tool_calls", "store", "metadata", "service_tier",
        "modalities", "audio", "reasoning_effort", "reasoning", "verbosity", "echo",
        "best_of", "encoding_format", "dimensions", "previous_response_id", "background",
        "conversation", "include", "truncation", "prompt_cache_key", "safety_identifier",
        "web_search_options", "max_tool_calls", "top_k", "min_p", "repetition_penalty",
        "function_call",
    }
)  # fmt: skip
# Per endpoint: the top-level fields whose text is counted already, or that hold none.
_NOT_EXTRA: Final[Mapping[str, frozenset[str]]] = {
    endpoint: SETTINGS_FIELDS | {prompt, "prediction", *EXTRA_FIELDS.get(endpoint, ())}
    for endpoint, prompt in PROMPT_FIELDS.items()
}


def extra_texts(endpoint: str, body: Mapping[str, Any]) -> list[str]:
    """The request's other billed input (EXTRA_FIELDS, and any field not known to hold
    no text: SETTINGS_FIELDS) as text: a string as it is, anything else as its JSON (the
    counts are an estimate, on the high side); and chat's predicted output
    (`prediction.content`: a string, or a list of text parts)."""
    fields = as_dict(body)
    texts = []
    for name in EXTRA_FIELDS.get(endpoint, ()):
        value = fields.get(name)
        if value is not None:  # most requests have none of them: no call
            texts.append(_as_text(value))
    known = _NOT_EXTRA.get(endpoint, SETTINGS_FIELDS)
    for name, value in fields.items():  # a few fields, each a set lookup
        if value is not None and name not in known:
            texts.append(_as_text(value))
    if endpoint == "chat":
        prediction = fields.get("prediction")
        if prediction is not None:
            # Predicted Outputs: OpenAI bills the prediction's rejected tokens as
            # completion tokens, so a worst case without its text could pass any budget.
            texts += prediction_texts(prediction)
    return texts


def prediction_texts(prediction: Any) -> list[str]:
    """The text of a prediction's `content` (a string, or typed parts' `text`)."""
    if type(prediction) is not dict and not isinstance(prediction, Mapping):
        return []
    content = prediction.get("content")
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    texts = []
    for part in content:
        if type(part) is dict or isinstance(part, Mapping):
            text = part.get("text")
            if isinstance(text, str):
                texts.append(text)
        elif isinstance(part, str):
            texts.append(part)
    return texts


def count_prompt_with(
    counter: TextCounter,
    endpoint: str,
    body: Mapping[str, Any],
    extras: list[str] | None = None,
    images: bool = True,
) -> int:
    """count_prompt with the counter already found (and the extra_texts, if made), with
    each image's image_allowance unless `images` is false: an estimate's prompt."""
    if extras is None:
        extras = extra_texts(endpoint, body)
    extra = sum(map(counter.count, extras))
    if endpoint == "chat":
        messages = body.get("messages")
        listed = messages if isinstance(messages, list) else ()
        return extra + count_messages_with(counter, listed, images)
    field = PROMPT_FIELDS.get(endpoint)
    value = body.get(field) if field else None
    if isinstance(value, str):
        return extra + counter.count(value)
    if isinstance(value, list):
        if endpoint == "responses":
            return extra + count_messages_with(counter, value, images)
        return extra + sum(_count_item(v, counter) for v in value)
    return extra


def _count_item(item: Any, counter: TextCounter) -> int:
    """One prompt/input item: text, a token id, or a list of token ids."""
    if isinstance(item, str):
        return counter.count(item)
    return len(item) if isinstance(item, list) else 1
