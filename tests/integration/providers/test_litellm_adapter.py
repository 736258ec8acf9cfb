"""LitellmProvider behaviour shared by every kind: lazy import, configuration, transport errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.providers.base import UpstreamClientError, UpstreamFailure
from gateway.providers.litellm_adapter import LitellmProvider, translate_error
from tests.integration.providers.litellm_upstreams import (
    API_KEY,
    AWS,
    LITELLM_WARNINGS,
    Deployment,
    upstream_call,
)

pytestmark = LITELLM_WARNINGS

REPO_ROOT = Path(__file__).resolve().parents[3]
MESSAGES = [{"role": "user", "content": "Greet me."}]


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter with no LITELLM_* settings inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITELLM_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_importing_the_adapter_does_not_import_litellm() -> None:
    """A gateway serving only OpenAI-compatible upstreams never pays litellm's import."""
    result = _run_python(
        """
        import sys
        from gateway.providers.litellm_adapter import LitellmProvider
        provider = LitellmProvider("a", "anthropic", None, "key", {})
        assert provider.endpoints == frozenset({"chat", "completions"})
        print("litellm" in sys.modules)
        """
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_first_call_fetches_nothing_from_the_network() -> None:
    """litellm loads offline: its cost-map URL is never fetched, even when reachable."""
    result = _run_python(
        """
        import asyncio, os, sys
        from tests.integration.providers.litellm_upstreams import run_upstream, upstream_call
        from gateway.providers.litellm_adapter import LitellmProvider

        async def main():
            async with run_upstream("anthropic") as mock:
                os.environ["LITELLM_MODEL_COST_MAP_URL"] = mock.base_url + "/cost-map.json"
                provider = LitellmProvider("a", "anthropic", mock.base_url, "key", {})
                messages = [{"role": "user", "content": "hi"}]
                await provider.send(upstream_call("chat", "claude-test", {"messages": messages}))
                await provider.close()
                await asyncio.sleep(0.5)  # room for a background fetch to show up
                print([seen.path for seen in mock.seen])

        asyncio.run(main())
        """
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['/v1/messages']"
    assert "cost map" not in result.stderr.lower()


def test_endpoints_per_kind_never_include_responses() -> None:
    """Anthropic serves chat and completions; Gemini and Bedrock embeddings too; none responses."""
    kinds = {
        "anthropic": LitellmProvider("a", "anthropic", None, "k", {}),
        "gemini": LitellmProvider("g", "gemini", None, "k", {}),
        "bedrock": LitellmProvider("b", "bedrock", None, None, AWS),
    }

    assert {kind: set(p.endpoints) for kind, p in kinds.items()} == {
        "anthropic": {"chat", "completions"},
        "gemini": {"chat", "completions", "embeddings"},
        "bedrock": {"chat", "completions", "embeddings"},
    }


def test_unknown_setting_is_refused_without_echoing_values() -> None:
    """A typo in `extra` fails at construction, naming the key and never a value."""
    with pytest.raises(ValueError, match="aws_region") as caught:
        LitellmProvider("b", "bedrock", None, None, {"aws_region": "secret-ish-value"})

    assert "secret-ish-value" not in str(caught.value)


def test_repr_shows_no_keys() -> None:
    """Logging a provider never prints its key or AWS secret."""
    text = repr(LitellmProvider("b", "bedrock", "http://bedrock.test", API_KEY, AWS))

    assert API_KEY not in text
    assert AWS["aws_secret_access_key"] not in text


async def test_unserved_endpoint_is_refused_without_upstream_call(anthropic: Deployment) -> None:
    """Embeddings on Anthropic are a 400 from the adapter; nothing is sent upstream."""
    with pytest.raises(UpstreamClientError) as caught:
        await anthropic.provider.send(upstream_call("embeddings", "claude-test", {"input": "x"}))

    assert caught.value.status == 400
    assert caught.value.code == "unsupported_endpoint"
    assert anthropic.upstream.seen == []


async def test_insufficient_quota_is_a_failure(anthropic: Deployment) -> None:
    """A 429 insufficient_quota is the deployment's problem: fail over, do not blame the caller."""
    anthropic.upstream.fail_next(
        429, {"error": {"type": "insufficient_quota", "code": "insufficient_quota",
                        "message": "You exceeded your current quota."}},
    )  # fmt: skip

    with pytest.raises(UpstreamFailure) as caught:
        await anthropic.provider.send(upstream_call("chat", "claude-test", {"messages": MESSAGES}))

    assert caught.value.status == 429
    assert caught.value.retry_after_s is None


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("kind", ["anthropic", "gemini", "bedrock"])
@pytest.mark.parametrize("is_stream", [False, True], ids=["send", "open_stream"])
async def test_refused_connection_is_a_failure(kind: str, is_stream: bool) -> None:
    """An upstream that refuses connections is an UpstreamFailure with no HTTP status."""
    base = f"http://127.0.0.1:{_closed_port()}"
    if kind == "bedrock":
        provider = LitellmProvider("b", "bedrock", base, None, AWS)
    else:
        provider = LitellmProvider("p", kind, base, API_KEY, {})  # type: ignore[arg-type]
    call = upstream_call("chat", "some-model", {"messages": MESSAGES}, is_stream=is_stream)

    try:
        with pytest.raises(UpstreamFailure) as caught:
            if is_stream:
                await provider.open_stream(call)
            else:
                await provider.send(call)
    finally:
        await provider.close()

    assert caught.value.status is None
    assert not caught.value.is_timeout
    assert API_KEY not in caught.value.detail


def test_litellm_timeout_is_a_timeout_failure() -> None:
    """litellm's own Timeout (its request deadline) maps to UpstreamFailure(is_timeout=True)."""
    from litellm.exceptions import Timeout

    error = Timeout("Request timed out.", model="claude-test", llm_provider="anthropic")

    failure = translate_error(error)

    assert isinstance(failure, UpstreamFailure)
    assert failure.is_timeout


def test_a_masked_key_in_a_relayed_litellm_error_is_redacted() -> None:
    """A 400 quoting our key masked ("sk-ant-a********wxyz") passes back without it."""
    from litellm.exceptions import BadRequestError

    error = BadRequestError(
        "AnthropicException - invalid x-api-key: sk-ant-a****************wxyz",
        model="claude-test",
        llm_provider="anthropic",
    )

    refused = translate_error(error)

    assert isinstance(refused, UpstreamClientError)
    assert "sk-ant-a" not in refused.message and "wxyz" not in refused.message
    assert "[redacted]" in refused.message


def test_a_404_from_a_translated_upstream_fails_over() -> None:
    """A model the provider no longer has (404) is the deployment's failure, not the
    caller's: the next deployment is tried."""
    from litellm.exceptions import NotFoundError

    error = NotFoundError(
        "GeminiException - models/gemini-old is not found",
        model="gemini-old",
        llm_provider="gemini",
    )

    failure = translate_error(error)

    assert isinstance(failure, UpstreamFailure)
    assert failure.status == 404


def _conversion_error() -> Exception:
    """What litellm raises when it cannot convert a message part: its ValueError wrapped
    as a connection error (status 500)."""
    from litellm.exceptions import APIConnectionError

    try:
        try:
            raise ValueError("Unsupported image format: bar.")
        except ValueError as cause:
            raise APIConnectionError(
                "Unsupported image format: bar.", llm_provider="bedrock", model="m"
            ) from cause
    except APIConnectionError as wrapped:
        return wrapped


def test_a_conversion_error_before_sending_is_the_callers_400() -> None:
    refused = translate_error(_conversion_error(), was_sent=False)

    assert isinstance(refused, UpstreamClientError)
    assert (refused.status, refused.type) == (400, "invalid_request_error")
    assert refused.message == "Unsupported image format: bar."


def test_the_same_error_after_sending_fails_the_attempt() -> None:
    """Once a request went upstream, a ValueError is litellm reading the answer: failed over."""
    assert isinstance(translate_error(_conversion_error(), was_sent=True), UpstreamFailure)
