"""The HTTP side of litellm's calls: importing litellm offline, and the hooks that keep
its requests on a provider's own session.

litellm is imported on first use (offline, quiet). Its calls go through the calling
provider's aiohttp session (the upstream rules at connect time) with no redirect
followed (`refuse_redirect`), and a call's hooks mark whether it reached the upstream
(`sending`, `mark_sent`: what it failed at before sending is the caller's input).
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import ssl
import sys
from contextvars import ContextVar
from typing import Any

import aiohttp

# The HTTP client of the provider whose litellm call is running (the adapter's `_invoke`):
# what the call gets where litellm would take its process-wide client, not the one passed.
CALL_CLIENT: ContextVar[Any] = ContextVar("litellm_call_client", default=None)
# What the running call (`sending`) did upstream, marked by its HTTP client's hooks; one
# object, shared by the tasks litellm may start (each gets a copy of the context).
SENT: ContextVar[Sending | None] = ContextVar("litellm_call_sent", default=None)


LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Proxy", "LiteLLM Router")


@functools.cache
def litellm_module() -> Any:
    """The litellm module, imported once without fetching anything (before a policy
    naming a translated provider is put in force: registry.load_translation)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
    # Read once, at import: litellm then downloads no image a message links to (the
    # adapter refuses those requests first; this covers a shape it does not know).
    os.environ["MAX_IMAGE_URL_DOWNLOAD_SIZE_MB"] = "0"
    import litellm
    import litellm.llms.custom_httpx.aiohttp_transport
    import litellm.llms.custom_httpx.http_handler

    # Gemini's async embeddings drop the `client` passed and take litellm's shared one, which
    # follows redirects and knows no upstream rules: they get the calling provider's.
    gemini_embed: Any = importlib.import_module(
        "litellm.llms.vertex_ai.gemini_embeddings.batch_embed_content_handler"
    )
    shared_client = gemini_embed.get_async_httpx_client

    def calling_providers_client(*args: Any, **kwargs: Any) -> Any:
        client = CALL_CLIENT.get()
        return shared_client(*args, **kwargs) if client is None else client

    gemini_embed.get_async_httpx_client = calling_providers_client
    _note_gemini_finishes()

    litellm.suppress_debug_info = True
    litellm.disable_streaming_logging = True  # per-chunk logging work nobody reads
    for name in LITELLM_LOGGERS:
        # Its own handlers print plain text to stderr, a warning per request for a
        # parameter it drops (probe p19): its errors reach the gateway's JSON lines.
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.setLevel(logging.ERROR)
    return litellm


GEMINI_MODULE = "litellm.llms.vertex_ai.gemini.vertex_and_google_ai_studio_gemini"
SAW_FINISH = "gateway_saw_finish"  # set on a Gemini stream's iterator at its finishReason


def _note_gemini_finishes() -> None:
    """Mark a Gemini stream's iterator once a chunk carries Gemini's `finishReason`.
    litellm reads a chunk without one as `stop` and ends a stream cut short (a closed
    connection, a cut event) with a made-up `stop` (probe p24): `gemini_saw_finish`
    tells the two apart."""
    iterator: Any = importlib.import_module(GEMINI_MODULE).ModelResponseIterator
    parse = iterator.chunk_parser

    def noting_finish(self: Any, chunk: Any) -> Any:
        if type(chunk) is dict:
            candidates = chunk.get("candidates")
            if type(candidates) is list and any(
                type(c) is dict and c.get("finishReason") for c in candidates
            ):
                setattr(self, SAW_FINISH, True)
        return parse(self, chunk)

    iterator.chunk_parser = noting_finish


def gemini_saw_finish(stream: Any) -> bool | None:
    """Has this litellm stream's Gemini iterator seen a `finishReason`? None: the stream
    is no Gemini stream this can tell of."""
    iterator = getattr(stream, "completion_stream", None)
    gemini = sys.modules.get(GEMINI_MODULE)
    if gemini is None or not isinstance(iterator, gemini.ModelResponseIterator):
        return None
    return getattr(iterator, SAW_FINISH, False) is True


class Redirected(Exception):
    """An upstream answered a redirect: a failed attempt, never followed (its Location may
    name any host, and the key would go with the request)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}: a redirect, not followed")
        self.status = status


class Sending:
    """Whether a litellm call has sent a request upstream."""

    __slots__ = ("is_sent",)

    def __init__(self) -> None:
        self.is_sent = False


def sending() -> Sending:
    """Marks what the calling task's litellm call does upstream from now on (`SENT`)."""
    marks = Sending()
    SENT.set(marks)
    return marks


async def mark_sent(request: Any) -> None:
    """httpx's request hook: the running call reached the upstream."""
    sending = SENT.get()
    if sending is not None:
        sending.is_sent = True


async def refuse_redirect(response: Any) -> None:
    """httpx's response hook: a 3xx ends the attempt, whatever a litellm call asked for."""
    if 300 <= response.status_code < 400:
        raise Redirected(response.status_code)


def no_other_session() -> aiohttp.ClientSession:
    # litellm asks for a new session when its own is closed or on another loop: a request
    # racing close(). It gets none without the upstream rules; the attempt fails.
    raise RuntimeError("this provider's HTTP session is closed")


def ssl_option(config: object) -> ssl.SSLContext | bool | None:
    """litellm's TLS settings (its CA bundle, `SSL_CERT_FILE`) as its own clients apply them."""
    if isinstance(config, ssl.SSLContext) or config is False:
        return config
    return None
