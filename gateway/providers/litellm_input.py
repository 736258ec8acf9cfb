"""A caller's prompts as litellm can take them: token ids read back as text, and what
litellm would answer wrongly refused. Pure, but for `text_inputs` (a thread hop).

OpenAI's completions `prompt` and embeddings `input` may be token ids (`[15339, 1917]`,
one prompt) or arrays of them (`[[15339], [1917]]`, one prompt each); LangChain's
`OpenAIEmbeddings` sends them by default. litellm passes ids to none of Anthropic,
Gemini or Bedrock: it fails before sending (a transport-like error that would fail over
and cool the deployment for the caller's input) or refuses them as litellm's own 400.
Here they are decoded, as LiteLLM's proxy does, with the encoding the gateway's
estimator counts the model's input with (`token_count.encoding_for`: o200k_base for
the gpt-4o family's names, else cl100k_base, the encoding LangChain and the SDK fall
back to). Ids that encoding cannot read are the caller's 400, naming where they are.

litellm turns a completions prompt list into one conversation and answers it once,
where OpenAI answers each prompt: a batch of more than one prompt (texts or token
arrays) is refused, as `n` > 1 is for these providers.

Gemini embeds only texts here: litellm reads an input that is a `data:` URL, a Files API
name (`files/...`) or a `gs://` URL as an image or file to embed, which Gemini answers
without a token count and litellm counts as 0 tokens (free); such an input is refused,
naming it, rather than priced at nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from gateway.limits.token_count import encoding_for
from gateway.providers.base import Endpoint, UpstreamCall, UpstreamClientError

# The fields that may hold token ids, per endpoint.
ID_FIELDS: dict[Endpoint, str] = {"completions": "prompt", "embeddings": "input"}
_ID_LIMIT = 2**32  # tiktoken reads ids as u32; past that it raises OverflowError
_KINDS = {str: "a string", int: "a token id", list: "an array of token ids"}
# What litellm's Gemini embeddings read as a file, not text (its `_is_multimodal_element`;
# a `data:` URL when it holds ";base64,").
_GEMINI_FILE_PREFIXES = ("files/", "gs://", "https://generativelanguage.googleapis.com/")


async def text_inputs(call: UpstreamCall, provider_kind: str) -> UpstreamCall:
    """`call` with its token ids read as text (on a thread: the first decode loads an
    encoding, ~40 MiB, and a large input takes a while), its completions batch refused.

    Raises UpstreamClientError (400, `param` naming the field) for ids the model's
    encoding cannot read, a non-prompt in the prompt list, a batch of prompts, or an image
    or file for Gemini to embed."""
    field = ID_FIELDS.get(call.endpoint)
    sent = call.body.get(field) if field else None
    if field is None or not isinstance(sent, list):
        if call.endpoint == "embeddings" and provider_kind == "gemini":
            refuse_media_inputs(sent)
        return call
    value: str | list[Any] = sent
    if has_token_ids(sent):
        value = await asyncio.to_thread(decoded, field, sent, call.model)
    if call.endpoint == "completions":
        value = one_prompt(value, provider_kind)
    elif provider_kind == "gemini":
        refuse_media_inputs(value)
    if value is sent:
        return call
    return dataclasses.replace(call, body={**call.body, field: value})


def has_token_ids(value: list[Any]) -> bool:
    """Does a prompt or input list hold anything but texts (ids, or items to refuse)?"""
    return not all(type(item) is str for item in value)


def decoded(field: str, value: list[Any], model: str) -> str | list[Any]:
    """`value` (a `prompt` or `input` list) with its token ids as text: a flat id list is
    one text, each id array in a list one text. Its items must be of one kind, as the
    first's (OpenAI's rule); raises UpstreamClientError naming the item that is not."""
    kind = type(value[0]) if value else str
    for index, item in enumerate(value):
        if type(item) is not kind or kind not in _KINDS:
            wanted = _KINDS.get(kind)
            expected = (
                f"{wanted} like '{field}[0]'"
                if wanted
                else "a string, a token id or an array of token ids"
            )
            raise _refusal(f"'{field}[{index}]' must be {expected}.", f"{field}[{index}]")
    if kind is int:
        return _text_of(value, field, model)
    if kind is list:
        return [_text_of(item, f"{field}[{index}]", model) for index, item in enumerate(value)]
    return value


def refuse_media_inputs(value: object) -> None:
    """Refuse (400, naming it) an embeddings input Gemini would embed as an image or file:
    no count of its tokens comes back to bill it by (module docstring)."""
    texts = value if isinstance(value, list) else [value]
    for index, text in enumerate(texts):
        if isinstance(text, str) and (
            text.startswith(_GEMINI_FILE_PREFIXES)
            or (text.startswith("data:") and ";base64," in text)
        ):
            param = f"input[{index}]" if isinstance(value, list) else "input"
            raise _refusal(
                f"'{param}' is an image or file reference; this model's provider (gemini) "
                "embeds text only through the gateway.",
                param,
            )


def one_prompt(prompt: str | list[Any], provider_kind: str) -> str | list[Any]:
    """A completions prompt as one text: a list of one is that text; more are refused."""
    if isinstance(prompt, str):
        return prompt
    if not prompt:
        raise _refusal("'prompt' must not be an empty array.", "prompt")
    if len(prompt) == 1 and isinstance(prompt[0], str):
        return prompt[0]
    raise _refusal(
        f"This model's provider ({provider_kind}) answers one prompt per request, not each "
        f"of a batch ({len(prompt)} prompts were sent); send one prompt per request.",
        "prompt",
    )


def _text_of(ids: object, param: str, model: str) -> str:
    if not isinstance(ids, list) or not all(type(i) is int and 0 <= i < _ID_LIMIT for i in ids):
        raise _refusal(f"'{param}' must be an array of token ids (integers).", param)
    encoder = encoding_for(model)
    try:
        return encoder.decode(ids)
    except KeyError:  # an id the encoding lacks (tiktoken: "Invalid token for decoding")
        raise _refusal(
            f"'{param}' holds token ids that are not {encoder.name}'s, the encoding this "
            "model's input is read with; send the text instead.",
            param,
        ) from None


def _refusal(message: str, param: str) -> UpstreamClientError:
    return UpstreamClientError(400, message, type_="invalid_request_error", param=param)
